package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tetherflow/tether/activities/lib/progress"
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
