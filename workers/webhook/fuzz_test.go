package webhook

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzSignature_Tamper signs any body with any secret at any time: the
// header parses and verifies under that secret and under no other; a
// change of any one byte of the body never verifies; a change of any one
// byte of the header verifies only when it still carries the signed
// timestamp and MAC (a hex digit's case, say), never another time.
func FuzzSignature_Tamper(f *testing.F) {
	f.Add([]byte(validBody), secretNew, int64(1700000000), uint16(3), byte('9'), false)
	f.Add([]byte(validBody), secretOld, int64(0), uint16(40), byte('A'), false)
	f.Add([]byte("{}"), "", int64(999999999999), uint16(0), byte(1), true)
	f.Add([]byte(""), "s", int64(-5), uint16(7), byte(','), false)
	f.Fuzz(func(t *testing.T, body []byte, secret string, unix int64, pos uint16, b byte, inBody bool) {
		if unix < 0 {
			unix = -(unix + 1)
		}
		unix %= 1e12 // at most 12 digits, as parseSignature reads them
		at := time.Unix(unix, 0)
		header := Sign("", at, body, secret)
		sig, err := parseSignature(header, DefaultSignatureScheme)
		if err != nil {
			t.Fatalf("Sign gave %q, which does not parse: %v", header, err)
		}
		if !sig.at.Equal(at) || sig.timestamp != strconv.FormatInt(unix, 10) {
			t.Fatalf("header %q parsed as signed at %s (%q), want %s", header, sig.at, sig.timestamp, at)
		}
		secrets := [][]byte{[]byte(secret + "x"), []byte(secret)}
		if got := sig.matches(body, secrets); got != 1 {
			t.Fatalf("a valid signature matches secret %d, want 1", got)
		}
		if got := sig.matches(body, secrets[:1]); got != -1 {
			t.Fatalf("a signature by %q matches another secret", secret)
		}
		if inBody {
			if len(body) == 0 || b == 0 {
				return
			}
			tampered := bytes.Clone(body)
			tampered[int(pos)%len(tampered)] ^= b
			if got := sig.matches(tampered, secrets); got != -1 {
				t.Fatalf("body %q changed to %q still verifies", body, tampered)
			}
			return
		}
		i := int(pos) % len(header)
		if header[i] == b {
			return
		}
		tampered := header[:i] + string([]byte{b}) + header[i+1:]
		sig2, err := parseSignature(tampered, DefaultSignatureScheme)
		if err != nil || sig2.matches(body, secrets) < 0 {
			return
		}
		if sig2.timestamp != sig.timestamp || !sig2.at.Equal(sig.at) || !slices.ContainsFunc(sig2.macs, func(m []byte) bool { return bytes.Equal(m, sig.macs[0]) }) {
			t.Fatalf("header %q changed to %q verifies with another timestamp or MAC: %+v", header, tampered, sig2)
		}
	})
}

// countingAccepter accepts everything and counts the calls (keeping no
// event: a fuzzing run makes millions).
type countingAccepter struct{ calls atomic.Int64 }

func (a *countingAccepter) Accept(context.Context, Event) error {
	a.calls.Add(1)
	return nil
}

// FuzzReceiver_Signature sends any body signed with the current, the
// previous or an unknown secret, at any clock skew, possibly with one
// byte of the body or of the signature header changed, through the
// receiver: it never acknowledges (nor hands to the Accepter) a delivery
// whose body changed, that an unknown secret signed, or whose timestamp
// is beyond the tolerance; it never refuses as unauthenticated an
// unchanged delivery signed with a known secret within the tolerance; and
// a changed header it accepts still carries the signed timestamp and MAC.
func FuzzReceiver_Signature(f *testing.F) {
	f.Add([]byte(validBody), int64(0), uint8(0), uint16(0), byte(0), false)
	f.Add([]byte(validBody), int64(299), uint8(1), uint16(0), byte(0), false)
	f.Add([]byte(validBody), int64(-301), uint8(0), uint16(0), byte(0), false)
	f.Add([]byte(validBody), int64(0), uint8(2), uint16(0), byte(0), false)
	f.Add([]byte(validBody), int64(5), uint8(3), uint16(20), byte('0'), false)
	f.Add([]byte(validBody), int64(5), uint8(0), uint16(9), byte(' '), true)
	f.Add([]byte("not json"), int64(0), uint8(0), uint16(0), byte(0), false)
	acc := &countingAccepter{}
	src := crmSource()
	src.Secrets = []string{secretNew, secretOld}
	src.MaxBody = 4096
	src.RateLimit = RateLimit{PerSecond: 1e9, Burst: 1 << 30}
	rcv, err := New([]Source{src}, testRegistry(f), acc, WithClock(func() time.Time { return t0 }))
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, body []byte, skew int64, secretIdx uint8, pos uint16, b byte, inBody bool) {
		if len(body) > 4096 {
			return
		}
		n++
		skew %= int64(time.Hour / time.Second)
		secrets := [][]string{{secretNew}, {secretOld}, {secretOther}, {secretOld, secretNew}}[int(secretIdx)%4]
		header := Sign("", t0.Add(-time.Duration(skew)*time.Second), body, secrets...)
		sent, changed := body, false
		if b != 0 && inBody && len(body) > 0 {
			sent = bytes.Clone(body)
			sent[int(pos)%len(sent)] ^= b
			changed = true
		}
		sentHeader, headerChanged := header, false
		if b != 0 && !inBody {
			i := int(pos) % len(header)
			if header[i] != b {
				sentHeader, headerChanged = header[:i]+string([]byte{b})+header[i+1:], true
			}
		}
		req := httptest.NewRequest(http.MethodPost, Path("crm"), bytes.NewReader(sent))
		req.Header.Set(DefaultSignatureHeader, sentHeader)
		req.Header.Set(DefaultDeliveryHeader, "fuzz-"+strconv.Itoa(n))
		before := acc.calls.Load()
		w := httptest.NewRecorder()
		rcv.ServeHTTP(w, req)
		after := acc.calls.Load()
		refused := w.Code == http.StatusUnauthorized
		if refused && after != before {
			t.Fatalf("401 after an Accept call")
		}
		known := secrets[len(secrets)-1] != secretOther
		inTolerance := skew <= int64(DefaultTolerance/time.Second) && -skew <= int64(DefaultTolerance/time.Second)
		switch {
		case changed && !refused, !known && !refused, !inTolerance && !refused:
			t.Fatalf("status %d for a delivery (body changed %v, known secret %v, skew %ds): %s", w.Code, changed, known, skew, w.Body)
		case !changed && !headerChanged && known && inTolerance && refused:
			t.Fatalf("a valid delivery refused: %s", w.Body)
		case headerChanged && !refused:
			orig, _ := parseSignature(header, DefaultSignatureScheme)
			got, err := parseSignature(sentHeader, DefaultSignatureScheme)
			if err != nil || got.timestamp != orig.timestamp {
				t.Fatalf("header %q changed to %q accepted (%d) with another timestamp (%v)", header, sentHeader, w.Code, err)
			}
			same := false
			for _, m := range got.macs {
				for _, o := range orig.macs {
					same = same || bytes.Equal(m, o)
				}
			}
			if !same {
				t.Fatalf("header %q changed to %q accepted (%d) with none of the signed MACs", header, sentHeader, w.Code)
			}
		}
	})
}
