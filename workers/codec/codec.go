// Package codec encrypts what tether's workflows and activities store in
// Temporal: every payload (inputs, results, signals, queries' answers,
// memos, summaries, heartbeat details) and, through the failure
// converter, every failure's message and stack trace.
//
// Payloads are sealed with AES-256-GCM under the keyring's current key; the
// key's id travels in the payload's metadata, so a keyring holding old keys
// beside the current one opens payloads written before a rotation.
// Payloads written without encryption (plain JSON from `temporal workflow
// start --input`) pass through Decode unchanged.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// Metadata of an encrypted payload.
const (
	// Encoding is the payload's "encoding": its data is a nonce and the
	// AES-256-GCM sealing of the original payload (protobuf).
	Encoding = "binary/encrypted"
	// MetaKeyID names the key that sealed it.
	MetaKeyID = "encryption-key-id"
	// MetaCipher names the cipher.
	MetaCipher = "encryption-cipher"
	// Cipher is the only cipher.
	Cipher = "AES256-GCM"
)

// KeySize is the size of a key: 32 bytes (AES-256).
const KeySize = 32

// Keyring holds the keys by id and which one seals new payloads.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewKeyring makes a keyring of keys (id to 32 bytes), sealing with
// current, which must be one of them.
func NewKeyring(current string, keys map[string][]byte) (*Keyring, error) {
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("the current key %q is not among the keys (%s)", current, strings.Join(slices.Sorted(maps.Keys(keys)), ", "))
	}
	k := &Keyring{current: current, aeads: map[string]cipher.AEAD{}}
	for id, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("key %q has %d bytes, want %d (AES-256): make one with `openssl rand -base64 32`", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		if k.aeads[id], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
	}
	return k, nil
}

// Current is the id of the key that seals new payloads.
func (k *Keyring) Current() string { return k.current }

// IDs are the ids of the keys that open payloads.
func (k *Keyring) IDs() []string { return slices.Sorted(maps.Keys(k.aeads)) }

// Encode implements converter.PayloadCodec.
func (k *Keyring) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := k.aeads[k.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := p.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encrypt payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("encrypt payload: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetaKeyID:                  []byte(k.current),
				MetaCipher:                 []byte(Cipher),
			},
			Data: aead.Seal(nonce, nonce, plain, []byte(k.current)),
		}
	}
	return out, nil
}

// Decode implements converter.PayloadCodec: encrypted payloads are opened
// with the key they name; others pass through.
func (k *Keyring) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetaKeyID])
		aead, ok := k.aeads[id]
		if !ok {
			return nil, fmt.Errorf("payload encrypted with key %q, which this keyring does not hold (it has %s): add that key (TETHER_ENCRYPTION_KEY_<ID> or a file in encryption.keys_dir)",
				id, strings.Join(k.IDs(), ", "))
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return nil, fmt.Errorf("payload encrypted with key %q is truncated", id)
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("payload encrypted with key %q does not open with it (a different key under that id, or altered data): %w", id, err)
		}
		var orig commonpb.Payload
		if err := orig.Unmarshal(plain); err != nil {
			return nil, fmt.Errorf("payload encrypted with key %q: %w", id, err)
		}
		out[i] = &orig
	}
	return out, nil
}

// DataConverter is the default JSON/proto converter with k's encryption
// (nil: the default converter).
func DataConverter(k *Keyring) converter.DataConverter {
	if k == nil {
		return converter.GetDefaultDataConverter()
	}
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), k)
}

// FailureConverter encrypts failures' messages and stack traces with k
// (they may quote a record); nil: the default.
func FailureConverter(k *Keyring) converter.FailureConverter {
	if k == nil {
		return temporal.GetDefaultFailureConverter()
	}
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter: DataConverter(k), EncodeCommonAttributes: true,
	})
}

// EnvPrefix starts the variables that hold keys: TETHER_ENCRYPTION_KEY_<ID>
// holds key <ID> (base64 of 32 bytes); <ID> is lower-cased, underscores
// become dashes.
const EnvPrefix = "TETHER_ENCRYPTION_KEY_"

// Load reads the keys of a keyring from the files of dir (each named by
// its key's id, holding base64 of 32 bytes, as a mounted secret) and from
// the environment (EnvPrefix), and makes it seal with current. An empty
// current means encryption is off: Load returns nil.
func Load(current, dir string, environ []string) (*Keyring, error) {
	if current == "" {
		return nil, nil
	}
	keys := map[string][]byte{}
	var problems []error
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("encryption.keys_dir (TETHER_ENCRYPTION_KEYS_DIR): %w", err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			b, err := os.ReadFile(path)
			if err == nil {
				keys[e.Name()], err = decodeKey(string(b))
			}
			if err != nil {
				problems = append(problems, fmt.Errorf("key file %s: %w", path, err))
			}
		}
	}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		id, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok || id == "" {
			continue
		}
		id = strings.ToLower(strings.ReplaceAll(id, "_", "-"))
		key, err := decodeKey(val)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", name, err))
			continue
		}
		keys[id] = key
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	k, err := NewKeyring(current, keys)
	if err != nil {
		return nil, fmt.Errorf("encryption.current (TETHER_ENCRYPTION_CURRENT): %w", err)
	}
	return k, nil
}

// decodeKey reads base64 (standard or URL, padded or not) of 32 bytes.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("%d bytes, want %d (AES-256): make one with `openssl rand -base64 32`", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64: make one with `openssl rand -base64 32`")
}
