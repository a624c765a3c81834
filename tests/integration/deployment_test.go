package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherflow/tether/starters/sandbox"
	"github.com/tetherflow/tether/tests/pgtest"
)

// TestDeployment_WorkersOfAnotherDatabaseRefuseTheTaskQueue: a worker
// pointed at another database (schema) than the workers already polling
// its task queue stops before it polls, saying why; another worker of the
// same database joins them.
func TestDeployment_WorkersOfAnotherDatabaseRefuseTheTaskQueue(t *testing.T) {
	s := newStack(t, stackOptions{sandbox: sandbox.Options{Seed: 2, Contacts: 10}, noWorker: true})
	bin := workerBinary(t)
	dir := t.TempDir()
	first := s.startWorkerProcess("worker-a", dir, s.workerEnv(), bin)
	waitPolling(t, first)

	same := s.startWorkerProcess("worker-a2", dir, s.workerEnv(), bin)
	waitPolling(t, same)

	other := pgtest.New(t)
	stray := s.startWorkerProcess("worker-b", dir, s.workerEnv("DATABASE_URL="+other.DSN), bin)
	select {
	case <-stray.Done():
	case <-time.After(time.Minute):
		t.Fatalf("the worker of another database did not stop; its log:\n%s", stray.logTail(20))
	}
	exited, err := stray.Exited()
	if !exited || err == nil {
		t.Errorf("the stray worker exited %v with %v, want a failure", exited, err)
	}
	log := stray.logTail(20)
	for _, want := range []string{"is polled by worker", "of another deployment", "give this deployment a task queue of its own"} {
		if !strings.Contains(log, want) {
			t.Errorf("the stray worker's log does not say %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "worker polling") {
		t.Errorf("the stray worker polled before it stopped:\n%s", log)
	}
}
