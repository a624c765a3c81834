package steps

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// MaxWriterWait bounds how long a run started with wait queues behind
// another run writing its integration.
const MaxWriterWait = 6 * time.Hour

// WhileBusy calls start until it returns anything but a failure.TypeBusy
// refusal. Without wait, that refusal is returned at once; with wait, it is
// waited out on durable timers (2 s, doubling to a minute, MaxWriterWait in
// all), and waiting is told of the refusal before each wait and of nil
// after it. Runs of every workflow that takes the writer lease start so.
func WhileBusy(ctx workflow.Context, wait bool, waiting func(refusal error), start func() error) error {
	delay, waited := 2*time.Second, time.Duration(0)
	for {
		err := start()
		if err == nil || !wait || !failure.IsType(err, failure.TypeBusy) || waited >= MaxWriterWait {
			return err
		}
		waiting(err)
		if err := workflow.Sleep(ctx, delay); err != nil {
			return err
		}
		waiting(nil)
		waited += delay
		delay = min(2*delay, time.Minute)
	}
}
