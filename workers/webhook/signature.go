package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxSignatures bounds the signature entries one header may carry; a
// sender signs with one secret, or two while it rotates.
const maxSignatures = 8

// Sign returns the signature header value for body sent at t: "t=<unix
// seconds>,<scheme>=<hex HMAC-SHA256>", with one signature entry per
// secret (a sender rotating its secret may sign with both). An empty
// scheme is DefaultSignatureScheme. It is what a sender computes, and what
// tests and benchmarks send.
func Sign(scheme string, t time.Time, body []byte, secrets ...string) string {
	if scheme == "" {
		scheme = DefaultSignatureScheme
	}
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		b.WriteString(",")
		b.WriteString(scheme)
		b.WriteString("=")
		b.WriteString(hex.EncodeToString(mac([]byte(s), ts, body)))
	}
	return b.String()
}

// mac is HMAC-SHA256 over timestamp + "." + body.
func mac(secret []byte, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// signature is a parsed signature header.
type signature struct {
	timestamp string    // as sent: it is what was signed
	at        time.Time // the timestamp as a time
	macs      [][]byte  // the decoded entries of the source's scheme
}

// parseSignature reads a header value of the form
// "t=<unix>,<scheme>=<hex>[,<scheme>=<hex>...]". Entries of other schemes
// are ignored, so a sender may add a newer scheme beside the old one.
func parseSignature(value, scheme string) (signature, error) {
	var sig signature
	seenT := false
	for part := range strings.SplitSeq(value, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return signature{}, fmt.Errorf("entry %q is not key=value", clip(part))
		}
		switch k {
		case "t":
			if seenT {
				return signature{}, errors.New("more than one timestamp (t=)")
			}
			seenT = true
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || len(v) > 12 {
				return signature{}, fmt.Errorf("timestamp %q is not Unix seconds", clip(v))
			}
			sig.timestamp, sig.at = v, time.Unix(n, 0)
		case scheme:
			if len(sig.macs) == maxSignatures {
				return signature{}, fmt.Errorf("more than %d %s= signatures", maxSignatures, scheme)
			}
			m, err := hex.DecodeString(v)
			if err != nil || len(m) != sha256.Size {
				return signature{}, fmt.Errorf("%s= is not a hex HMAC-SHA256 (64 hex digits)", scheme)
			}
			sig.macs = append(sig.macs, m)
		}
	}
	if !seenT {
		return signature{}, errors.New("no timestamp (t=)")
	}
	if len(sig.macs) == 0 {
		return signature{}, fmt.Errorf("no %s= signature", scheme)
	}
	return sig, nil
}

// matches returns the index of the first secret under which one of the
// header's signatures is the HMAC-SHA256 of its timestamp and body, or -1.
// Every secret and signature is compared, in constant time.
func (sig signature) matches(body []byte, secrets [][]byte) int {
	found := -1
	for i, s := range secrets {
		want := mac(s, sig.timestamp, body)
		for _, got := range sig.macs {
			if hmac.Equal(got, want) && found < 0 {
				found = i
			}
		}
	}
	return found
}

// clip shortens text quoted back to the sender in an error.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
