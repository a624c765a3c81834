package failure

import "testing"

// TestNextStep: every error type a run can fail with says what to do next.
func TestNextStep(t *testing.T) {
	for _, typ := range []string{TypeConfig, TypeSourceHTTP, TypeSourceAuth, TypeSourceNotFound, TypeSourceThrottled,
		TypeSourceUnavailable, TypeSourceMalformed, TypeSourceTooLarge, TypeSourceShortRead, TypeSinkSQL, TypeSinkUnavailable, TypeSinkHTTP,
		TypeSinkAuth, TypeSinkNotFound, TypeSinkThrottled, TypeSinkMalformed, TypeCircuitOpen, TypeInvalidThreshold,
		TypeStagedPageMissing, TypeCompensation, TypeRunFenced, TypeBusy} {
		if NextStep(typ) == "" {
			t.Errorf("no next step for %s", typ)
		}
	}
	if got := NextStep("SomethingElse"); got != "" {
		t.Errorf("NextStep of an unknown type = %q, want \"\"", got)
	}
}
