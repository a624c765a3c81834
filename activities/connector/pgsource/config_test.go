package pgsource

import (
	"strings"
	"testing"

	"github.com/tetherflow/tether/activities/lib/failure"
)

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	valid := Config{DSN: "postgres://u:pw@h/db", Table: "orders", Key: []string{"id"}}
	with := func(f func(*Config)) Config {
		c := valid
		f(&c)
		return c
	}
	sixtyFour := strings.Repeat("a", 64)
	tests := []struct {
		name string
		give Config
		want []string // substrings of the error, one per expected problem; nil = valid
	}{
		{name: "minimal", give: valid},
		{name: "every field", give: Config{DSNEnv: "ORDERS_DSN", Schema: "crm", Table: "Orders", Columns: []string{"id", "updated_at", "name"},
			Key: []string{"id"}, CursorColumn: "updated_at", Where: "deleted_at IS NULL", MaxOpenConns: 2}},
		{name: "key=value dsn", give: with(func(c *Config) { c.DSN = "host=h user=u password=pw dbname=db" })},
		{name: "composite key, full read", give: with(func(c *Config) { c.Key = []string{"tenant", "id"} })},
		{name: "cursor column that is the key", give: with(func(c *Config) { c.CursorColumn = "id" })},
		{name: "no dsn", give: with(func(c *Config) { c.DSN = "" }), want: []string{"dsn: one of dsn or dsn_env is required"}},
		{name: "both dsn and dsn_env", give: with(func(c *Config) { c.DSNEnv = "X" }), want: []string{"dsn: set only one of dsn and dsn_env"}},
		{name: "dsn scheme", give: with(func(c *Config) { c.DSN = "mysql://u:pw@h/db" }), want: []string{`dsn: scheme "mysql" is not postgres or postgresql`}},
		{name: "dsn not a URL, password hidden", give: with(func(c *Config) { c.DSN = "postgres://u:s3cret@h:port/db" }), want: []string{"dsn: postgres://u:xxxxx@h:port/db is not a valid URL"}},
		{name: "dsn_env name", give: Config{DSNEnv: "MY-DSN", Table: "t", Key: []string{"id"}}, want: []string{`dsn_env: "MY-DSN" is not an environment variable name`}},
		{name: "schema", give: with(func(c *Config) { c.Schema = "crm.x" }), want: []string{`schema: "crm.x" is not a valid identifier`}},
		{name: "no table", give: with(func(c *Config) { c.Table = "" }), want: []string{"table: is required"}},
		{name: "table too long", give: with(func(c *Config) { c.Table = sixtyFour }), want: []string{"table: \"" + sixtyFour + "\" is not a valid identifier"}},
		{name: "table with quote", give: with(func(c *Config) { c.Table = `a"b` }), want: []string{`table: "a\"b" is not a valid identifier`}},
		{name: "no key", give: with(func(c *Config) { c.Key = nil }), want: []string{"key: at least one key column is required"}},
		{name: "bad key column", give: with(func(c *Config) { c.Key = []string{"id", "1x"} }), want: []string{`key[1]: "1x" is not a valid identifier`}},
		{name: "empty key column", give: with(func(c *Config) { c.Key = []string{""} }), want: []string{"key[0]: is required"}},
		{name: "duplicate key column", give: with(func(c *Config) { c.Key = []string{"id", "id"} }), want: []string{`key[1]: duplicate key column "id"`}},
		{name: "bad cursor column", give: with(func(c *Config) { c.CursorColumn = "updated at" }), want: []string{`cursor_column: "updated at" is not a valid identifier`}},
		{name: "incremental with composite key", give: with(func(c *Config) { c.CursorColumn = "updated_at"; c.Key = []string{"tenant", "id"} }),
			want: []string{"key: incremental reads (cursor_column set) support exactly one key column, got 2 (tenant, id)"}},
		{name: "bad column", give: with(func(c *Config) { c.Columns = []string{"id", "x-y"} }), want: []string{`columns[1]: "x-y" is not a valid identifier`}},
		{name: "duplicate column", give: with(func(c *Config) { c.Columns = []string{"id", "id"} }), want: []string{`columns[1]: duplicate column "id"`}},
		{name: "columns without the key", give: with(func(c *Config) { c.Columns = []string{"name"} }), want: []string{`columns: must include key column "id"`}},
		{name: "columns without the cursor", give: with(func(c *Config) { c.Columns = []string{"id"}; c.CursorColumn = "updated_at" }),
			want: []string{`columns: must include cursor_column "updated_at"`}},
		{name: "max_open_conns", give: with(func(c *Config) { c.MaxOpenConns = -1 }), want: []string{"max_open_conns: must not be negative, got -1"}},
		{
			name: "every problem at once",
			give: Config{Table: "", Schema: "1", Key: nil, Columns: []string{"a", "a"}, MaxOpenConns: -2},
			want: []string{"dsn: one of dsn or dsn_env is required", `schema: "1"`, "table: is required",
				"key: at least one key column is required", `columns[1]: duplicate column "a"`, "max_open_conns: must not be negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.give.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate() = %q, want it to contain %q", msg, w)
				}
			}
			if got := len(strings.Split(msg, "\n")); got != len(tt.want) {
				t.Errorf("Validate() reported %d problems, want %d:\n%s", got, len(tt.want), msg)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("Validate() = %q shows the password", msg)
			}
		})
	}
}

func TestNew_ConfigErrors(t *testing.T) {
	t.Parallel()
	noEnv := func(string) (string, bool) { return "", false }
	envWith := func(v string) func(string) (string, bool) {
		return func(string) (string, bool) { return v, true }
	}
	tests := []struct {
		name string
		give Config
		env  func(string) (string, bool)
		want string
	}{
		{name: "invalid config", give: Config{Table: "t"}, want: `postgres source "orders": dsn: one of dsn or dsn_env is required`},
		{name: "dsn_env not set", give: Config{DSNEnv: "ORDERS_DSN", Table: "t", Key: []string{"id"}}, env: noEnv,
			want: "dsn_env: environment variable ORDERS_DSN is not set"},
		{name: "dsn_env holds no postgres URL", give: Config{DSNEnv: "ORDERS_DSN", Table: "t", Key: []string{"id"}}, env: envWith("http://u:s3cret@h/"),
			want: `dsn_env: ORDERS_DSN: scheme "http" is not postgres or postgresql`},
		{name: "dsn the driver refuses", give: Config{DSN: "postgres://u:s3cret@h/db?sslmode=sometimes", Table: "t", Key: []string{"id"}},
			want: "dsn: postgres://u:xxxxx@h/db?sslmode=sometimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New("orders", tt.give, WithLookupEnv(tt.env))
			if err == nil {
				t.Fatal("New() = nil error")
			}
			if !failure.IsPermanent(err) || !failure.IsType(err, failure.TypeConfig) {
				t.Errorf("New() = %v, want a permanent %s", err, failure.TypeConfig)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("New() = %q shows the password", err)
			}
		})
	}
}
