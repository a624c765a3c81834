package failure

// nextSteps says, per error type, what an operator does about a run that
// failed with it.
var nextSteps = map[string]string{
	TypeConfig:            "fix the integration's configuration (tether validate shows what), then start a new run",
	TypeSourceHTTP:        "the source refused the request; fix what its answer says, then start a new run (it resumes from the checkpoint)",
	TypeSourceAuth:        "check the source's credentials (the connection's auth), then start a new run",
	TypeSourceNotFound:    "check the source's base_url and path, then start a new run",
	TypeSourceThrottled:   "the source kept throttling; lower rate_limit or start a new run later (it resumes from the checkpoint)",
	TypeSourceUnavailable: "the source kept failing; start a new run when it answers again (it resumes from the checkpoint)",
	TypeSourceMalformed:   "the source kept sending a body tether cannot read; check the source (records_path, pagination), then start a new run",
	TypeSourceTooLarge:    "lower the page size (batch_size) or raise max_body_bytes, then start a new run",
	TypeSourceShortRead:   "the source ended its answer early (a lost next link, a server-side cap); check the source, then start a new run (it resumes from the checkpoint); short_read: warn completes such runs with a warning instead",
	TypeSinkSQL:           "fix the destination table as the SQL error says, then start a new run (it resumes from the checkpoint)",
	TypeSinkUnavailable:   "the destination database was unreachable; start a new run when it is back",
	TypeSinkHTTP:          "the destination API refused the request; fix what its answer says, then start a new run",
	TypeSinkAuth:          "check the destination's credentials, then start a new run",
	TypeSinkNotFound:      "check the destination's base_url and paths, then start a new run",
	TypeSinkThrottled:     "the destination kept throttling; lower its rate_limit or start a new run later",
	TypeSinkMalformed:     "the destination API answered what tether cannot read (id_path, batch results); check its configuration",
	TypeCircuitOpen:       "the destination kept failing and its circuit breaker stayed open; start a new run when it is healthy",
	TypeInvalidThreshold:  "look at the quarantine (tether quarantine), fix the source or the schema, then replay it (tether quarantine replay --integration NAME)",
	TypeStagedPageMissing: "start a new run (it resumes from the checkpoint)",
	TypeCompensation:      "restore the listed batches by hand from their before-images, then start a new run",
	TypeRunFenced:         "another run took the integration over; look at it (tether runs)",
	TypeBusy:              "another run is writing the integration; start with --wait to queue behind it",
}

// NextStep says what to do about a run that failed with an error of type
// typ, or "" when there is nothing particular to say.
func NextStep(typ string) string { return nextSteps[typ] }
