package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/tetherflow/tether/activities/lib/progress"
	"github.com/tetherflow/tether/workflows/datasync"
)

// Bar renders a one-line progress report. With a known total it draws a
// filled bar; otherwise it draws an activity bar that moves with the pages.
func Bar(r progress.Report, total int, width int, elapsed time.Duration) string {
	if width < 10 {
		width = 10
	}
	c := r.Counts
	var bar string
	if total > 0 {
		done := c.Fetched
		if done > total {
			done = total
		}
		fill := width * done / total
		bar = "[" + strings.Repeat("=", fill) + strings.Repeat(" ", width-fill) + "]" + fmt.Sprintf(" %3d%%", 100*done/total)
	} else {
		pos := c.Pages % width
		cells := []byte(strings.Repeat(" ", width))
		for i := 0; i < 3; i++ {
			cells[(pos+i)%width] = '='
		}
		if r.Done {
			cells = []byte(strings.Repeat("=", width))
		}
		bar = "[" + string(cells) + "]"
	}
	rate := ""
	if s := elapsed.Seconds(); s > 0.5 {
		rate = fmt.Sprintf(" · %s rec/s", human(int(float64(c.Fetched)/s)))
	}
	return fmt.Sprintf("%s %s · pages %d · fetched %s · valid %s · quarantined %s · applied %s · unchanged %s%s · %s",
		bar, r.Integration, c.Pages, human(c.Fetched), human(c.Valid), human(c.Invalid), human(c.Applied()), human(c.Unchanged), rate, r.Step)
}

func human(n int) string {
	s := fmt.Sprint(n)
	if n < 10000 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Watch shows a progress bar for a sync run until it closes, then returns
// its result (or its failure). total, when known, is the number of records
// expected (0 = unknown).
func Watch(ctx context.Context, c client.Client, out io.Writer, workflowID string, total int) (datasync.Result, error) {
	tty := isTerminal(out)
	start := time.Now()
	lastPrint := time.Time{}
	var last progress.Report
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		// The latest execution: a long run continues as new under the same id.
		desc, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
		if err != nil {
			return datasync.Result{}, fmt.Errorf("describe %s: %w", workflowID, err)
		}
		running := desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING
		if running {
			if v, err := c.QueryWorkflow(ctx, workflowID, "", datasync.QueryProgress); err == nil {
				var r progress.Report
				if v.Get(&r) == nil {
					last = r
				}
			}
			line := Bar(last, total, 30, time.Since(start))
			switch {
			case tty:
				fmt.Fprintf(out, "\r\033[K%s", truncate(line, 160))
			case time.Since(lastPrint) > 2*time.Second:
				fmt.Fprintln(out, line)
				lastPrint = time.Now()
			}
		} else {
			// An empty run id follows continue-as-new to the run's last execution.
			var res datasync.Result
			err := c.GetWorkflow(ctx, workflowID, "").Get(ctx, &res)
			last.Counts, last.Done, last.Integration = res.Counts, true, firstNonEmpty(res.Integration, last.Integration)
			last.Step = "done"
			if tty {
				fmt.Fprintf(out, "\r\033[K%s\n", truncate(Bar(last, total, 30, time.Since(start)), 160))
			} else {
				fmt.Fprintln(out, Bar(last, total, 30, time.Since(start)))
			}
			return res, err
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(out)
			}
			return datasync.Result{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
