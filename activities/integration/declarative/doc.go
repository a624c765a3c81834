// Package declarative loads integrations declared in YAML files, so a new
// integration needs no recompiled worker.
//
//	crm-contacts.yaml ──Load──► Spec ──Resolve(env, files)──► integration.Definition
//	   (viper, checked against         (secret references   (+ the schema document of a
//	    integration.schema.json)        intact, Hash)         schema file given by path)
//
// In: one YAML file per integration, in a directory. Its format is
// schemas/integration.schema.json: name, source (http or postgres),
// schema, key_field, cursor_field, mapping, destination (one step,
// postgres or http) or destinations (the steps of a saga, in order, each
// with its name, mode, identity, ids from earlier steps, own mapping and
// reversal), match (duplicate detection), the run's policies, schedules
// (Temporal Schedules of kind sync, refresh or reconcile, with cron, every
// and durations written as "15m") and reconcile (what a reconciliation
// does with extra rows), every object closed so that a misspelt key is an
// error. Secrets are never
// written in the file: auth.token, auth.api_key and auth.client_secret of
// an http source or destination, and source.postgres.dsn, are references,
// {env: NAME} or {file: PATH}. A dsn {env: NAME} resolves to the
// pgsource.Config's dsn_env, so the connection string is only read when
// the source connects.
//
// Out: a Spec per file, the file as written (with secret references, so it
// can be stored and hashed: Hash pins the version a run used), and, from
// Resolve, the integration.Definition a worker registers beside the Go
// ones, with secrets read and defaults filled.
//
// Every problem is reported at once as a *Problem, "<file>: <JSON
// pointer>: <reason> (line N)": Load reports what the schema refuses and
// what is wrong with the schedules (a cron expression, a time zone),
// LoadDir adds names defined twice, Resolve adds missing environment
// variables and files (by name, never a value) and what
// integration.Definition.Validate refuses.
//
// Watch follows a directory (fsnotify, debounced) and reports each new
// result; a Set keeps the last good one for the code that runs the
// integrations (Current, Subscribe), so a broken edit never replaces it.
//
// A complete file, the YAML twin of the Go integration crm-contacts:
//
//	name: crm-contacts-yaml
//	description: CRM contacts → PostgreSQL crm_contacts_yaml, incremental by updated_at
//	version: 1
//	source:
//	  http:
//	    base_url: http://127.0.0.1:8081
//	    path: /v1/contacts
//	    records_path: data
//	    pagination: {style: page, page_param: page, size_param: per_page}
//	    incremental: {param: updated_since}
//	    auth:
//	      kind: none              # bearer: token: {env: CRM_TOKEN}
//	schema: contacts.schema.json  # or ./contacts.json, beside this file
//	key_field: id
//	cursor_field: updated_at
//	mapping:
//	  - {to: id, from: id, cast: int, required: true}
//	  - {to: full_name, join: [first_name, last_name], normalize: [collapse_spaces]}
//	  - {to: email, from: email, normalize: [email], required: true}
//	  - {to: score, from: score, cast: int, default: 0}
//	  - {to: city, from: address.city, normalize: [trim]}
//	  - {to: updated_at, from: updated_at, cast: timestamp, required: true}
//	destination:
//	  postgres:
//	    name: crm_contacts_yaml
//	    columns:
//	      - {name: id, type: bigint, not_null: true}
//	      - {name: full_name, type: text}
//	      - {name: email, type: text, not_null: true}
//	      - {name: score, type: integer}
//	      - {name: city, type: text}
//	      - {name: updated_at, type: timestamptz}
//	    key: [id]
//	    version_column: updated_at
//	invalid_threshold: 0.05
//	batch_size: 1000
//	pages_in_flight: 4
//
// (The shipped file, workers/integrations/yaml/crm-contacts-yaml.yaml, maps
// every column of crm-contacts. testdata/billing-customers.yaml is a saga
// of three destinations, testdata/people-postgres.yaml reads a PostgreSQL
// source.)
package declarative
