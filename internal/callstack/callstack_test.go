package callstack_test

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool/internal/callstack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stacks holds one capture's PCs both ways, taken in the same frame.
type stacks struct {
	fp, rc []uintptr
}

// captureBoth records the stack with Capture and with runtime.Callers, so
// that both start in captureBoth's own frame (at different lines).
//
//go:noinline
func captureBoth(depth int) stacks {
	fp := make([]uintptr, depth)
	rc := make([]uintptr, depth)
	fp = fp[:callstack.Capture(fp)]
	rc = rc[:runtime.Callers(1, rc)]
	return stacks{fp, rc}
}

// frame is what a leak report prints of one frame.
type frame struct {
	Function, File string
	Line           int
}

// symbolize expands pcs as a report does, skipping wrappers.
func symbolize(pcs []uintptr) []frame {
	var out []frame
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if !callstack.Wrapper(f) {
			out = append(out, frame{f.Function, f.File, f.Line})
		}
		if !more {
			return out
		}
	}
}

func render(fs []frame) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s %s:%d\n", f.Function, f.File, f.Line)
	}
	return b.String()
}

// checkSame checks that s's two stacks name the same frames, beyond
// captureBoth's own (whose lines differ), and returns the frames.
// truncated says the buffers filled up: then only the shorter run of
// frames is compared (Capture's buffer holds physical frames, which may
// expand to more).
func checkSame(t *testing.T, s stacks, truncated bool) []frame {
	t.Helper()
	fp, rc := symbolize(s.fp), symbolize(s.rc)
	require.NotEmpty(t, fp)
	require.NotEmpty(t, rc)
	assert.True(t, strings.HasSuffix(fp[0].Function, ".captureBoth"), fp[0].Function)
	assert.True(t, strings.HasSuffix(rc[0].Function, ".captureBoth"), rc[0].Function)
	fp, rc = fp[1:], rc[1:]
	if truncated {
		n := min(len(fp), len(rc))
		fp, rc = fp[:n], rc[:n]
	}
	assert.Equal(t, render(rc), render(fp))
	if !callstack.FramePointers {
		assert.Equal(t, s.rc[1:], s.fp[1:], "the fallback is runtime.Callers")
	}
	return fp
}

// The chains below mix frames the compiler inlines (small leaf-like
// functions) with frames it must not.

func inlinedLeaf(depth int) stacks { return captureBoth(depth) }

func inlinedMiddle(depth int) stacks { return inlinedLeaf(depth) }

//go:noinline
func physical(depth int) stacks { return inlinedMiddle(depth) }

func inlinedTop(depth int) stacks { return physical(depth) }

type valueRecv struct{ depth int }

// Called through an interface holding a *valueRecv, it runs behind the
// (*valueRecv).capture wrapper the compiler generates.
//
//go:noinline
func (v valueRecv) capture() stacks { return inlinedMiddle(v.depth) }

// Capture is capture, exported for reflect.
//
//go:noinline
func (v valueRecv) Capture() stacks { return inlinedMiddle(v.depth) }

type capturer interface{ capture() stacks }

//go:noinline
func recurse(n, depth int) stacks {
	var pad [256]byte // grows the stack as it goes, so that it is copied
	if n == 0 {
		return physical(depth + int(pad[0]))
	}
	return recurse(n-1, depth)
}

func TestCaptureSymbolizesLikeCallers(t *testing.T) {
	cases := []struct {
		name      string
		get       func() stacks
		truncated bool
		want      []string // function names that must appear, in order
	}{
		{"inlined", func() stacks { return inlinedTop(64) },
			false, []string{"inlinedLeaf", "inlinedMiddle", "physical", "inlinedTop"}},
		{"closure", func() stacks {
			f := func() stacks { return physical(64) }
			return f()
		}, false, []string{"physical"}},
		{"interface wrapper", func() stacks {
			var c capturer = &valueRecv{64}
			return c.capture()
		}, false, []string{"inlinedMiddle", "valueRecv.capture"}},
		{"method value", func() stacks {
			f := valueRecv{64}.capture
			return f()
		}, false, []string{"valueRecv.capture"}},
		{"reflect", func() stacks {
			out := reflect.ValueOf(physical).Call([]reflect.Value{reflect.ValueOf(64)})
			return out[0].Interface().(stacks)
		}, false, []string{"physical", "reflect.Value.Call"}},
		{"reflect.MakeFunc", func() stacks {
			var f func(int) stacks
			fv := reflect.MakeFunc(reflect.TypeOf(f), func(args []reflect.Value) []reflect.Value {
				return []reflect.Value{reflect.ValueOf(physical(int(args[0].Int())))}
			})
			reflect.ValueOf(&f).Elem().Set(fv)
			return f(64)
		}, false, []string{"physical", "func"}},
		{"method value through reflect", func() stacks {
			m := reflect.ValueOf(valueRecv{64}).MethodByName("Capture")
			return m.Call(nil)[0].Interface().(stacks)
		}, false, []string{"valueRecv.Capture", "reflect.Value.Call"}},
		{"deferred", func() (s stacks) {
			defer func() { s = physical(64) }()
			return stacks{}
		}, false, []string{"physical", "func"}},
		{"deferred in a loop", func() (s stacks) {
			for i := range 2 {
				defer func() {
					if i == 0 {
						s = physical(64)
					}
				}()
			}
			return stacks{}
		}, false, []string{"physical", "func"}},
		{"goroutine", func() stacks {
			ch := make(chan stacks)
			go func() { ch <- inlinedTop(64) }()
			return <-ch
		}, false, []string{"physical", "inlinedTop"}},
		{"deep, grown stack", func() stacks { return recurse(200, 512) }, false, []string{"physical", "recurse"}},
		{"truncated", func() stacks { return recurse(50, 16) }, true, []string{"physical", "recurse"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.get()
			frames := checkSame(t, s, tc.truncated)
			var names []string
			for _, f := range frames {
				names = append(names, f.Function)
			}
			joined := strings.Join(names, "\n")
			last := -1
			for _, w := range tc.want {
				i := strings.Index(joined, w)
				if assert.GreaterOrEqual(t, i, 0, "%s in\n%s", w, joined) {
					assert.Greater(t, i, last, "%s in order in\n%s", w, joined)
					last = i
				}
			}
			if !tc.truncated {
				assert.Equal(t, "runtime.goexit", names[len(names)-1], "the walk reaches the goroutine's first frame")
			}
		})
	}
}

// TestCaptureExpandsInlinedFrames pins that the inlining the test relies on
// happens: a physical frame holds several logical ones.
func TestCaptureExpandsInlinedFrames(t *testing.T) {
	if !callstack.FramePointers {
		t.Skip("runtime.Callers expands inlined frames itself")
	}
	s := inlinedTop(64)
	assert.Greater(t, len(symbolize(s.fp)), len(s.fp)-1, "more frames than PCs")
	assert.Less(t, len(s.fp), len(s.rc), "one PC per physical frame")
}

func TestWrapper(t *testing.T) {
	for _, tc := range []struct {
		f    runtime.Frame
		want bool
	}{
		{runtime.Frame{Function: "a/b.(*T).M", File: "<autogenerated>"}, true},
		{runtime.Frame{Function: "testing.(*T).Run.gowrap1", File: "testing.go"}, true},
		{runtime.Frame{Function: "a/b.f.deferwrap12", File: "b.go"}, true},
		{runtime.Frame{Function: "a/b.gowrap", File: "b.go"}, false},
		{runtime.Frame{Function: "a/b.gowrapper1x", File: "b.go"}, false},
		{runtime.Frame{Function: "a/b.f.func1", File: "b.go"}, false},
		{runtime.Frame{Function: "runtime.call1024", File: "asm_amd64.s"}, true},
		{runtime.Frame{Function: "runtime.callers", File: "traceback.go"}, false},
		{runtime.Frame{Function: "runtime.deferreturn", File: "panic.go"}, true},
		{runtime.Frame{Function: "a/gowrap1.f", File: "b.go"}, false},
	} {
		assert.Equal(t, tc.want, callstack.Wrapper(tc.f), tc.f.Function)
	}
}

// TestCaptureBuffer checks the bounds: a short buffer is filled, not
// overrun, and an empty one is left alone.
func TestCaptureBuffer(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			buf := make([]uintptr, n+1)
			buf[n] = 42
			got := callstack.Capture(buf[:n])
			assert.Equal(t, n, got)
			assert.Equal(t, uintptr(42), buf[n])
		})
	}
}

var sink int

// atDepth runs f under n more frames.
//
//go:noinline
func atDepth(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	atDepth(n-1, f)
}

// BenchmarkCapture measures a capture of 16 frames from 20 deep, the
// frame-pointer walk against runtime.Callers.
func BenchmarkCapture(b *testing.B) {
	pcs := make([]uintptr, 16)
	for _, m := range []struct {
		name    string
		capture func([]uintptr) int
	}{
		{"fp", callstack.Capture},
		{"callers", func(pcs []uintptr) int { return runtime.Callers(1, pcs) }},
	} {
		b.Run("unwind="+m.name, func(b *testing.B) {
			atDepth(20, func() {
				for b.Loop() {
					sink += m.capture(pcs)
				}
			})
		})
	}
}
