// Command worker runs tether's workflows and their steps, and the
// integrations written as workflow code it is built with (the customer
// onboarding example, workflows/onboarding).
//
//	worker [--config FILE] [--cpuprofile FILE]
//
// Configuration comes from defaults, the optional YAML file and the
// environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DATABASE_URL,
// TETHER_*). Bad configuration, or a Temporal or PostgreSQL that cannot be
// reached, stops it with one message and exit status 1 before it polls.
// SIGINT or SIGTERM stop polling and let running activities finish.
//
// The worker runs its garbage collector at GOGC=400 (app.DefaultGCPercent)
// unless GOGC is set: more heap for less CPU. GOGC=100 restores Go's
// default; GOMEMLIMIT caps the heap.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/tetherflow/tether/workers/app"
	"github.com/tetherflow/tether/workers/config"
	"github.com/tetherflow/tether/workflows/onboarding"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	file := fs.String("config", os.Getenv("TETHER_CONFIG"), "YAML configuration file (env TETHER_CONFIG)")
	profile := fs.String("cpuprofile", os.Getenv("TETHER_CPUPROFILE"), "write a CPU profile of the worker's life to this file, for go tool pprof (env TETHER_CPUPROFILE)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	app.TuneGC()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "worker: cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		return 1
	}
	a := app.New(cfg, app.WithWorkflows(onboarding.Register))
	if err := a.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", app.StartError(err))
		return 1
	}
	startCtx, cancel := context.WithTimeout(context.Background(), a.StartTimeout())
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", app.StartError(err))
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stopCtx, cancel2 := context.WithTimeout(context.Background(), a.StopTimeout())
	defer cancel2()
	if err := a.Stop(stopCtx); err != nil {
		fmt.Fprintf(os.Stderr, "worker: stop: %v\n", err)
		return 1
	}
	return 0
}
