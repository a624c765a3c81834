package declarative

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Watch waits after the last change in the directory
// before it loads it: an editor's save or a deploy is several events.
const debounce = 200 * time.Millisecond

// Watch reports the integration files of dir to onChange when it starts and
// after every change in the directory, until ctx ends: onChange(specs, nil)
// when every file loads (see LoadDir), onChange(nil, err) with every
// problem when one does not. A change that leaves the result as it was
// (same specs, or the same problems) is not reported again. It returns nil
// when ctx ends, or the error that stopped it from watching. It does not
// watch files outside dir (a schema or secret file elsewhere).
func Watch(ctx context.Context, dir string, onChange func([]Spec, error)) error {
	last := ""
	load := func() {
		specs, err := LoadDir(dir)
		state := "err:" + fmt.Sprint(err)
		if err == nil {
			state = "ok:" + setHash(specs)
		}
		if state == last {
			return
		}
		last = state
		onChange(specs, err)
	}
	return Changes(ctx, dir, load, func(err error) {
		if err != nil {
			onChange(nil, err)
			last = ""
			return
		}
		load()
	})
}

// Changes watches dir until ctx ends: ready runs once the watch is in
// place (a change from then on is seen), and changed after each change
// in the directory (a burst of events, as an editor's save or a deploy
// makes, is one change), or with the error the watch reported. It
// returns nil when ctx ends, or the error that stopped it from watching.
func Changes(ctx context.Context, dir string, ready func(), changed func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, unwrapPath(err))
	}
	if ready != nil {
		ready()
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			changed(fmt.Errorf("watch %s: %w", dir, err))
		case <-timer.C:
			changed(nil)
		}
	}
}

// setHash identifies a set of specs: their files and hashes.
func setHash(specs []Spec) string {
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = s.File + "=" + s.Hash()
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Set holds the integrations declared in a directory as last loaded
// successfully, for the code that runs them to read (Current) or follow
// (Subscribe). A load that fails, or that the set's check refuses, never
// replaces it. It is safe for concurrent use.
type Set struct {
	check func([]Spec) error

	applying sync.Mutex // one Apply at a time
	mu       sync.Mutex
	specs    []Spec
	hash     string
	subs     map[int]func([]Spec)
	next     int
}

// NewSet returns a set holding specs. check, when not nil, must accept a
// new set of specs before it replaces the current one (e.g. every spec
// resolves, no name clashes with the Go integrations).
func NewSet(specs []Spec, check func([]Spec) error) *Set {
	return &Set{specs: slices.Clone(specs), hash: setHash(specs), check: check, subs: map[int]func([]Spec){}}
}

// Current returns the current specs, sorted by file. The specs are shared:
// do not change them.
func (s *Set) Current() []Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.specs)
}

// Subscribe calls fn with the new specs each time the set changes, until
// the returned function is called. fn runs on the goroutine that applied
// the change and must not block for long.
func (s *Set) Subscribe(fn func([]Spec)) (unsubscribe func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// Apply takes a result of Watch (or LoadDir): good specs that pass the
// check replace the current ones and are sent to the subscribers; a load
// error or a refused set is returned and the current specs stay. The same
// specs again change nothing.
func (s *Set) Apply(specs []Spec, loadErr error) error {
	if loadErr != nil {
		return loadErr
	}
	s.applying.Lock()
	defer s.applying.Unlock()
	h := setHash(specs)
	s.mu.Lock()
	same := h == s.hash
	s.mu.Unlock()
	if same {
		return nil
	}
	if s.check != nil {
		if err := s.check(specs); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.specs, s.hash = slices.Clone(specs), h
	subs := make([]func([]Spec), 0, len(s.subs))
	for _, id := range slices.Sorted(maps.Keys(s.subs)) {
		subs = append(subs, s.subs[id])
	}
	s.mu.Unlock()
	for _, fn := range subs {
		fn(slices.Clone(specs))
	}
	return nil
}
