package integration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// cronShorthands are the @-forms Temporal reads, as five fields.
var cronShorthands = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// cronField is one field of a cron expression: its range and, for months
// and days of the week, the names it takes (a name may be shortened to
// its first minName letters, as Temporal reads them).
type cronField struct {
	name     string
	min, max int
	names    []string
	minName  int
}

var (
	cronSecond = cronField{name: "second", max: 59}
	cronMinute = cronField{name: "minute", max: 59}
	cronHour   = cronField{name: "hour", max: 23}
	cronDay    = cronField{name: "day-of-month", min: 1, max: 31}
	cronMonth  = cronField{name: "month", min: 1, max: 12, minName: 3, names: []string{
		"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}}
	cronWeekday = cronField{name: "day-of-week", max: 7, minName: 2, names: []string{
		"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}}
	cronYear = cronField{name: "year", min: 2000, max: 2100}
)

// checkCron checks a cron expression as Temporal's server reads one:
// 5 fields (minute hour day-of-month month day-of-week), 6 (… year) or 7
// (second … year), each a comma-separated list of *, N, N-M, with an
// optional /STEP; months and days of the week also by name (JAN, mon); or
// @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. The
// time zone and intervals have keys of their own (time_zone, every), so
// TZ=, CRON_TZ= and @every are refused with a pointer to them. The server
// checks again when the schedule is created.
func checkCron(expr string) error {
	c := strings.TrimSpace(expr)
	switch {
	case c == "":
		return errors.New("empty: want e.g. \"0 2 * * *\" (02:00 every day) or @daily")
	case strings.HasPrefix(c, "TZ=") || strings.HasPrefix(c, "CRON_TZ="):
		return errors.New("a time zone inside the expression: set the schedule's time_zone instead")
	case strings.HasPrefix(c, "@every"):
		return errors.New("@every: set the schedule's every (and offset) instead, e.g. every: 15m")
	case strings.Contains(c, "#"):
		return errors.New("a comment (#) is not read here: put it in the file as a YAML comment")
	case strings.HasPrefix(c, "@"):
		v, ok := cronShorthands[c]
		if !ok {
			return errors.New("unknown shorthand: want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")
		}
		c = v
	}
	var fields []cronField
	parts := strings.Fields(c)
	switch len(parts) {
	case 5:
		fields = []cronField{cronMinute, cronHour, cronDay, cronMonth, cronWeekday}
	case 6:
		fields = []cronField{cronMinute, cronHour, cronDay, cronMonth, cronWeekday, cronYear}
	case 7:
		fields = []cronField{cronSecond, cronMinute, cronHour, cronDay, cronMonth, cronWeekday, cronYear}
	default:
		return fmt.Errorf("%d fields: want 5 (minute hour day-of-month month day-of-week), 6 (… year) or 7 (second minute … year)", len(parts))
	}
	for i, p := range parts {
		if err := fields[i].check(p); err != nil {
			return fmt.Errorf("%s %q: %v", fields[i].name, p, err)
		}
	}
	return nil
}

// check checks one field: a comma-separated list of ranges.
func (f cronField) check(s string) error {
	for _, item := range strings.Split(s, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 {
				return fmt.Errorf("step %q is not a whole number of at least 1", step)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		start, err := f.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		end, err := f.value(hi)
		if err != nil {
			return err
		}
		if end < start {
			return fmt.Errorf("range %s ends before it starts", rng)
		}
	}
	return nil
}

// value reads one value of the field: a number in its range or a name.
func (f cronField) value(s string) (int, error) {
	if f.names != nil && len(s) >= f.minName {
		lower := strings.ToLower(s)
		for i, n := range f.names {
			if strings.HasPrefix(n, lower) {
				return i + f.min, nil
			}
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q is not a number %d-%d or a name such as %s", s, f.min, f.max, f.names[0][:3])
		}
		return 0, fmt.Errorf("%q is not a number %d-%d (or *, N-M, */STEP, lists with commas)", s, f.min, f.max)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}
