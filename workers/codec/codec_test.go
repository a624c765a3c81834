package codec

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestKeyring_SealsAndOpensAndKeepsPlainPayloads(t *testing.T) {
	k, err := NewKeyring("a", map[string][]byte{"a": key(1)})
	if err != nil {
		t.Fatal(err)
	}
	dc := DataConverter(k)
	p, err := dc.ToPayload(map[string]string{"email": "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.GetData(), []byte("ada@example.com")) || string(p.GetMetadata()[MetaKeyID]) != "a" ||
		string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
		t.Fatalf("payload not sealed: %v", p)
	}
	var back map[string]string
	if err := dc.FromPayload(p, &back); err != nil || back["email"] != "ada@example.com" {
		t.Fatalf("open: %v %v", back, err)
	}
	// Plain JSON (temporal workflow start --input) still decodes.
	plain, _ := converter.GetDefaultDataConverter().ToPayload(map[string]string{"integration": "crm"})
	var in map[string]string
	if err := dc.FromPayload(plain, &in); err != nil || in["integration"] != "crm" {
		t.Fatalf("plain payload: %v %v", in, err)
	}
	// Two sealings of one payload differ (random nonce).
	q, _ := dc.ToPayload(map[string]string{"email": "ada@example.com"})
	if bytes.Equal(p.GetData(), q.GetData()) {
		t.Error("two sealings are identical")
	}
	// Altered data does not open.
	bad := &commonpb.Payload{Metadata: p.GetMetadata(), Data: append([]byte(nil), p.GetData()...)}
	bad.Data[len(bad.Data)-1] ^= 1
	if _, err := k.Decode([]*commonpb.Payload{bad}); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("altered payload: %v", err)
	}
}

func TestKeyring_RotationOpensOldPayloads(t *testing.T) {
	a, _ := NewKeyring("a", map[string][]byte{"a": key(1)})
	old, _ := a.Encode([]*commonpb.Payload{{Data: []byte("before rotation")}})
	b, err := NewKeyring("b", map[string][]byte{"a": key(1), "b": key(2)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Decode(old)
	if err != nil || string(got[0].GetData()) != "before rotation" {
		t.Fatalf("payload sealed under a, opened by a keyring sealing with b: %v %v", got, err)
	}
	sealedB, _ := b.Encode([]*commonpb.Payload{{Data: []byte("after")}})
	if string(sealedB[0].GetMetadata()[MetaKeyID]) != "b" {
		t.Errorf("new payloads sealed with %q, want b", sealedB[0].GetMetadata()[MetaKeyID])
	}
	if _, err := a.Decode(sealedB); err == nil || !strings.Contains(err.Error(), `key "b"`) {
		t.Errorf("a keyring without b: %v, want an error naming key b", err)
	}
}

func TestLoad_KeysFromFilesAndEnvironment(t *testing.T) {
	if k, err := Load("", "", nil); k != nil || err != nil {
		t.Fatalf("no current key: %v %v, want encryption off", k, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "2026-06"), []byte(base64.StdEncoding.EncodeToString(key(1))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{EnvPrefix + "2026_12=" + base64.RawURLEncoding.EncodeToString(key(2)), "OTHER=1"}
	k, err := Load("2026-12", dir, env)
	if err != nil || k.Current() != "2026-12" || strings.Join(k.IDs(), ",") != "2026-06,2026-12" {
		t.Fatalf("Load = %v, %v", k, err)
	}
	for _, c := range []struct {
		current, want string
		env           []string
	}{
		{"missing", `current key "missing" is not among the keys`, env},
		{"short", "16 bytes, want 32", []string{EnvPrefix + "SHORT=" + base64.StdEncoding.EncodeToString(make([]byte, 16))}},
		{"x", "not base64", []string{EnvPrefix + "X=not*base64"}},
	} {
		if _, err := Load(c.current, "", c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%q): %v, want %q", c.current, err, c.want)
		}
	}
	if _, err := Load("a", filepath.Join(dir, "nope"), nil); err == nil || !strings.Contains(err.Error(), "encryption.keys_dir") {
		t.Errorf("missing keys dir: %v", err)
	}
}
