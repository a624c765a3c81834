package pgsource

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// column is what the Source knows about one column of its table.
type column struct {
	name string
	// typ is the column's type without modifiers ("numeric", "timestamp
	// with time zone"): the target of the casts on position parameters.
	typ string
	// category is pg_type.typcategory: N numeric, D date/time, S string...
	category string
	// collatable columns are compared COLLATE "C" in incremental reads.
	collatable bool
	notNull    bool
}

// tableInfo is what the catalog says about the table, read once per Source.
type tableInfo struct {
	// kind is pg_class.relkind: r table, p partitioned, m materialized
	// view, v view, f foreign table.
	kind       string
	columns    map[string]column
	uniqueKeys [][]string // key columns of each valid, total, plain unique index
}

// describeSQL lists the table's columns with their types. It returns no
// row when the table does not exist or is not visible.
const describeSQL = `SELECT c.relkind::text, a.attname::text, format_type(a.atttypid, NULL),
       ty.typcategory::text, a.attcollation <> 0, a.attnotnull
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type ty ON ty.oid = a.atttypid
WHERE c.oid = to_regclass($1)
ORDER BY a.attnum`

// uniqueKeysSQL lists the key columns of every unique index (primary keys
// included) that makes its columns unique in every row: valid, without a
// predicate and without expressions.
const uniqueKeysSQL = `SELECT i.indexrelid::bigint, a.attname::text
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
ORDER BY 1, k.ord`

// readCatalog reads the table's columns and unique keys from the catalog.
// found is false when the table does not exist or is not visible.
func readCatalog(ctx context.Context, db *sql.DB, regclass string) (info tableInfo, found bool, err error) {
	rows, err := db.QueryContext(ctx, describeSQL, regclass)
	if err != nil {
		return tableInfo{}, false, err
	}
	info.columns = map[string]column{}
	for rows.Next() {
		var c column
		if err := rows.Scan(&info.kind, &c.name, &c.typ, &c.category, &c.collatable, &c.notNull); err != nil {
			rows.Close()
			return tableInfo{}, false, err
		}
		info.columns[c.name] = c
	}
	if err := rows.Close(); err != nil {
		return tableInfo{}, false, err
	}
	if err := rows.Err(); err != nil {
		return tableInfo{}, false, err
	}
	if len(info.columns) == 0 {
		return tableInfo{}, false, nil
	}

	rows, err = db.QueryContext(ctx, uniqueKeysSQL, regclass)
	if err != nil {
		return tableInfo{}, false, err
	}
	defer rows.Close()
	last := int64(-1)
	for rows.Next() {
		var idx int64
		var name string
		if err := rows.Scan(&idx, &name); err != nil {
			return tableInfo{}, false, err
		}
		if idx != last {
			info.uniqueKeys = append(info.uniqueKeys, nil)
			last = idx
		}
		n := len(info.uniqueKeys) - 1
		info.uniqueKeys[n] = append(info.uniqueKeys[n], name)
	}
	return info, true, rows.Err()
}

// checkable reports whether the catalog can vouch for the key: tables,
// partitioned tables and materialized views have NOT NULL constraints and
// unique indexes; views and foreign tables do not.
func (t tableInfo) checkable() bool {
	return t.kind == "r" || t.kind == "p" || t.kind == "m"
}

// keyIsUnique reports whether some unique index covers only key columns,
// which makes the key unique.
func (t tableInfo) keyIsUnique(key []string) bool {
	for _, uk := range t.uniqueKeys {
		if len(uk) > 0 && !slices.ContainsFunc(uk, func(c string) bool { return !slices.Contains(key, c) }) {
			return true
		}
	}
	return false
}

// incrementalCategories are the type categories a cursor column may have
// in incremental reads: numbers, dates and times, and strings. Their JSON
// rendering by to_jsonb is accepted back as input by the column's type,
// and orders the way the pipeline compares checkpoints.
var incrementalCategories = map[string]string{"N": "numeric", "D": "date/time", "S": "string"}

// queries are the statements of one Source, built once from its Config and
// the catalog.
type queries struct {
	// first reads the first page. $1 is the limit.
	first string
	// after reads strictly after a position: $1..$n are the position's
	// values (key columns; or cursor then key), $n+1 is the limit.
	after string
	// from (incremental only) reads rows whose cursor is at or after $1,
	// for a checkpoint with a cursor and no key; $2 is the limit.
	from string
}

// quoteIdent quotes a validated identifier.
func quoteIdent(name string) string { return `"` + name + `"` }

// qualifiedName is the table's name as SQL, schema-qualified when a schema
// is configured.
func qualifiedName(cfg Config) string {
	if cfg.Schema == "" {
		return quoteIdent(cfg.Table)
	}
	return quoteIdent(cfg.Schema) + "." + quoteIdent(cfg.Table)
}

// maxBuildPairs is how many name/value pairs one jsonb_build_object call
// takes: functions accept at most 100 arguments.
const maxBuildPairs = 50

// recordExpr is the SQL expression of one record: the whole row, or the
// configured columns in order.
func recordExpr(cols []string) string {
	if len(cols) == 0 {
		return "to_jsonb(t)"
	}
	var parts []string
	for start := 0; start < len(cols); start += maxBuildPairs {
		end := min(start+maxBuildPairs, len(cols))
		var b strings.Builder
		b.WriteString("jsonb_build_object(")
		for i, c := range cols[start:end] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "'%s', t.%s", c, quoteIdent(c))
		}
		b.WriteString(")")
		parts = append(parts, b.String())
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, " || ") + ")"
}

// orderColumns are the columns a read is ordered and resumed by.
func orderColumns(cfg Config) []string {
	if cfg.Incremental() {
		return []string{cfg.CursorColumn, cfg.Key[0]}
	}
	return cfg.Key
}

// buildQueries builds the statements of cfg, casting position parameters
// to the column types in info.
func buildQueries(cfg Config, info tableInfo) queries {
	order := orderColumns(cfg)

	// Each ordering column as compared and sorted. Incremental reads
	// compare strings byte-wise (COLLATE "C"), which is how the pipeline
	// compares checkpoints; full reads keep the column's collation, so the
	// key's index serves the ORDER BY.
	exprs := make([]string, len(order))
	params := make([]string, len(order))
	for i, name := range order {
		c := info.columns[name]
		exprs[i] = "t." + quoteIdent(name)
		if cfg.Incremental() && c.collatable {
			exprs[i] += ` COLLATE "C"`
		}
		params[i] = fmt.Sprintf("$%d::%s", i+1, c.typ)
	}

	var sel strings.Builder
	sel.WriteString("SELECT ")
	for _, name := range order {
		if cfg.Incremental() {
			// Rendered as in the record, which is what the pipeline's
			// checkpoint will hold.
			fmt.Fprintf(&sel, "to_jsonb(t.%s) #>> '{}', ", quoteIdent(name))
		} else {
			// The type's own text form: always accepted back as input.
			fmt.Fprintf(&sel, "t.%s::text, ", quoteIdent(name))
		}
	}
	sel.WriteString(recordExpr(cfg.Columns))
	sel.WriteString("::text\nFROM ")
	sel.WriteString(qualifiedName(cfg))
	sel.WriteString(" AS t\n")

	var conds []string
	if cfg.Where != "" {
		// On lines of its own, so a trailing -- comment cannot swallow the rest.
		conds = append(conds, "(\n"+cfg.Where+"\n)")
	}
	if cfg.Incremental() {
		conds = append(conds, "t."+quoteIdent(cfg.CursorColumn)+" IS NOT NULL")
	}
	where := func(extra string, limitParam int) string {
		all := conds
		if extra != "" {
			all = append(slices.Clip(all), extra)
		}
		var b strings.Builder
		b.WriteString(sel.String())
		if len(all) > 0 {
			b.WriteString("WHERE ")
			b.WriteString(strings.Join(all, "\n  AND "))
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "ORDER BY %s\nLIMIT $%d", strings.Join(exprs, ", "), limitParam)
		return b.String()
	}

	q := queries{
		first: where("", 1),
		after: where(fmt.Sprintf("(%s) > (%s)", strings.Join(exprs, ", "), strings.Join(params, ", ")), len(order)+1),
	}
	if cfg.Incremental() {
		q.from = where(fmt.Sprintf("%s >= %s", exprs[0], params[0]), 2)
	}
	return q
}
