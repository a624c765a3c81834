package webhook

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestSource_Validate(t *testing.T) {
	tests := []struct {
		name string
		give Source
		want []string // every problem, in order
	}{
		{name: "minimal is valid", give: Source{Name: "crm", Secrets: []string{"s"}, KeyPath: "id"}},
		{
			name: "everything set is valid",
			give: Source{
				Name: "crm-2.eu_west", Secrets: []string{"new", "old"}, SignatureHeader: "X-Acme-Signature", SignatureScheme: "v2",
				Tolerance: time.Minute, MaxBody: 4096, Schema: "contacts.schema.json", OnInvalid: OnInvalidReject,
				DeliveryHeader: "X-Acme-Delivery", KeyPath: "data.id", VersionPath: "data.updated_at",
				RateLimit: RateLimit{PerSecond: 0.5, Burst: 3},
			},
		},
		{
			name: "everything wrong at once",
			give: Source{
				Name: "crm/contacts", Secrets: []string{"", " padded\n", "third"}, SignatureHeader: "X Sig", SignatureScheme: "v=1",
				Tolerance: -time.Second, MaxBody: -1, OnInvalid: "drop", DeliveryHeader: "Bad:Header", KeyPath: "data..id",
				VersionPath: ".v", RateLimit: RateLimit{PerSecond: -1, Burst: -2},
			},
			want: []string{
				`name: "crm/contacts" must be a letter or digit followed by letters, digits, '.', '_' or '-'`,
				"secrets: 3 secrets given, at most 2 (the current one and the previous one while rotating)",
				"secrets[0]: empty (an unset environment variable?)",
				"secrets[1]: has leading or trailing whitespace (a copied newline?)",
				`signature_header: "X Sig" is not a valid header name`,
				`signature_scheme: "v=1" must be a letter or digit followed by letters, digits, '.', '_' or '-'`,
				"tolerance: must not be negative, got -1s",
				"max_body: must not be negative, got -1",
				`on_invalid: unknown choice "drop" (want quarantine or reject)`,
				`delivery_header: "Bad:Header" is not a valid header name`,
				`key_path: "data..id" has an empty segment at position 2`,
				`version_path: ".v" has an empty segment at position 1`,
				"rate_limit.per_second: must not be negative, got -1",
				"rate_limit.burst: must not be negative, got -2",
			},
		},
		{
			name: "nothing set",
			give: Source{},
			want: []string{
				"name: required",
				"secrets: at least one secret is required",
				`key_path: required: the dot path of the entity key in the body, e.g. "data.id"`,
			},
		},
		{
			name: "headers and labels that collide",
			give: Source{Name: ".crm", Secrets: []string{"s"}, KeyPath: "id", SignatureScheme: "t", DeliveryHeader: "x-tether-signature"},
			want: []string{
				`name: ".crm" must be a letter or digit followed by letters, digits, '.', '_' or '-'`,
				`signature_scheme: "t" is the timestamp's label`,
				`delivery_header: "x-tether-signature" is also the signature header`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, sec := range tt.give.Secrets {
				if len(strings.TrimSpace(sec)) > 3 && err != nil && strings.Contains(err.Error(), strings.TrimSpace(sec)) {
					t.Errorf("Validate() quotes a secret: %v", err)
				}
			}
		})
	}
}

func TestSource_withDefaults(t *testing.T) {
	got := Source{Name: "crm"}.withDefaults()
	want := Source{
		Name: "crm", SignatureHeader: "X-Tether-Signature", SignatureScheme: "v1", Tolerance: 5 * time.Minute,
		MaxBody: 1 << 20, OnInvalid: OnInvalidQuarantine, DeliveryHeader: "X-Tether-Delivery",
		RateLimit: RateLimit{PerSecond: 100, Burst: 200},
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("withDefaults() =\n%#v\nwant\n%#v", got, want)
	}
	if b := (Source{RateLimit: RateLimit{PerSecond: 0.2}}).withDefaults().RateLimit.Burst; b != 1 {
		t.Errorf("burst at 0.2/s = %d, want 1", b)
	}
}

func TestSource_StringHidesSecrets(t *testing.T) {
	s := crmSource()
	s.Secrets = []string{secretNew, secretOld}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("loaded", "source", s)
	for _, text := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %s", s, s, s), fmt.Sprint([]Source{s}), logs.String()} {
		if strings.Contains(text, secretNew) || strings.Contains(text, secretOld) {
			t.Errorf("secret printed: %s", text)
		}
		if !strings.Contains(text, "crm") {
			t.Errorf("source not named: %s", text)
		}
	}
}
