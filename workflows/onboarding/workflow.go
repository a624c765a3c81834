// Package onboarding is an integration written as workflow code with
// tether's steps (package steps): OnboardCustomer onboards one CRM contact.
//
//	StartRun → StageRecords → ValidateBatch → TransformBatch → ApplyBatch billing
//	  → wait for the "approve" update (or the approval timeout)
//	  → approved: ApplyBatch links → FinishRun
//	  → rejected or timed out: BeginCompensation → CompensateBatch billing → FinishRun
//
// The contact becomes a billing customer at once (created once, under an
// idempotency key, whatever the retries), then the workflow waits for a
// person to approve or reject it with a Temporal Update:
//
//	temporal workflow update execute --workflow-id onboard/17 --name approve \
//	  --input '{"approved": true, "by": "ana"}'
//
// Approved, the CRM contact is linked to its customer (a row in
// onboarding_links). Rejected, or not answered within the approval timeout,
// the customer is deleted again (the run is compensated). An invalid
// contact is quarantined with its reasons, as a sync's records are, and
// nothing is created. The "status" query says where it stands.
package onboarding

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tetherflow/tether/activities/lib/failure"
	"github.com/tetherflow/tether/workflows/steps"
)

// WorkflowType is the registered name, as typed in `temporal workflow
// start --type OnboardCustomer`.
const WorkflowType = "OnboardCustomer"

// Names of the update and query.
const (
	// UpdateApprove carries a Decision; its answer is the Status after it.
	UpdateApprove = "approve"
	// QueryStatus returns the Status.
	QueryStatus = "status"
)

// Defaults of an onboarding.
const (
	// DefaultIntegration is the integration whose steps it runs.
	DefaultIntegration = "onboarding"
	// DefaultApprovalTimeout is how long it waits for a decision.
	DefaultApprovalTimeout = 72 * time.Hour
)

// Outcomes of an onboarding (Result.Outcome).
const (
	OutcomeOnboarded = "onboarded"
	OutcomeRejected  = "rejected"
	OutcomeTimedOut  = "timed out"
	OutcomeInvalid   = "invalid"
)

// Input starts an onboarding with plain JSON:
// {"contact": {...}, "approvalTimeout": "48h"}.
type Input struct {
	// Contact is the CRM contact, as the CRM's API serves it.
	Contact json.RawMessage `json:"contact"`
	// ApprovalTimeout is how long to wait for a decision before undoing
	// everything, as a Go duration ("72h", "30m"); default 72h.
	ApprovalTimeout string `json:"approvalTimeout,omitempty"`
	// Integration runs another integration's steps (default "onboarding");
	// it must have a "billing" and a "links" destination, in that order.
	Integration string `json:"integration,omitempty"`
}

// Decision is a person's answer, sent with the "approve" update.
type Decision struct {
	Approved bool   `json:"approved"`
	By       string `json:"by"`
	Note     string `json:"note,omitempty"`
}

// Status is where an onboarding stands (the "status" query and the
// update's answer).
type Status struct {
	Stage string `json:"stage"`
	// Deadline is when an unanswered onboarding is undone.
	Deadline time.Time `json:"deadline,omitzero"`
	Decision *Decision `json:"decision,omitempty"`
	RunID    string    `json:"runId,omitempty"`
}

// Result is how it ended.
type Result struct {
	Outcome  string       `json:"outcome"`
	Decision *Decision    `json:"decision,omitempty"`
	Run      steps.Result `json:"run"`
}

// Stages, as Status.Stage says them.
const (
	stageStarting  = "starting"
	stageCreating  = "creating the billing customer"
	stageAwaiting  = "awaiting approval"
	stageLinking   = "linking the CRM contact"
	stageUndoing   = "undoing the billing customer"
	stageDone      = "done"
	approveSummary = "approval deadline"
)

// OnboardCustomer onboards one CRM contact (see the package doc).
func OnboardCustomer(ctx workflow.Context, in Input) (res Result, err error) {
	o, err := newOnboarding(ctx, in)
	if err != nil {
		return Result{}, err
	}
	run, err := steps.Start(ctx, o.integration, steps.Options{Records: true, Trigger: "onboarding"})
	if err != nil {
		return Result{}, err
	}
	o.status.RunID = run.ID
	var saga steps.Saga
	defer func() {
		if err != nil && !errors.Is(err, errInvalid) {
			o.status.Stage = stageUndoing
			err = errors.Join(err, saga.Compensate(ctx))
		}
		res.Run, err = run.Finish(ctx, err)
		o.status.Stage = stageDone
		if errors.Is(err, errInvalid) {
			res.Outcome, err = OutcomeInvalid, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidContact", nil)
		}
	}()
	page, err := o.create(ctx, run)
	if err != nil {
		return Result{}, err
	}
	saga.Add("delete the billing customer", run.Compensate)
	d, err := o.await(ctx)
	if err != nil {
		return Result{}, err // cancelled: the saga undoes the customer
	}
	if d == nil || !d.Approved {
		o.status.Stage = stageUndoing
		res.Outcome, res.Decision = OutcomeRejected, d
		if d == nil {
			res.Outcome = OutcomeTimedOut
		}
		return res, saga.Compensate(ctx)
	}
	o.status.Stage = stageLinking
	if _, err := run.ApplyStep(ctx, page, "links"); err != nil {
		return Result{Decision: o.status.Decision}, err
	}
	return Result{Outcome: OutcomeOnboarded, Decision: o.status.Decision}, nil
}

// errInvalid marks a contact the steps refused (quarantined).
var errInvalid = errors.New("the contact is invalid")

// onboarding is one execution's state.
type onboarding struct {
	integration string
	timeout     time.Duration
	contact     json.RawMessage
	status      Status
}

func newOnboarding(ctx workflow.Context, in Input) (*onboarding, error) {
	o := &onboarding{integration: in.Integration, timeout: DefaultApprovalTimeout, contact: in.Contact,
		status: Status{Stage: stageStarting}}
	if o.integration == "" {
		o.integration = DefaultIntegration
	}
	var problems []string
	if len(in.Contact) == 0 || string(in.Contact) == "null" {
		problems = append(problems, `"contact" is required: the CRM contact to onboard, as JSON`)
	}
	if in.ApprovalTimeout != "" {
		d, err := time.ParseDuration(in.ApprovalTimeout)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf(`"approvalTimeout" %q is not a positive duration ("72h", "30m")`, in.ApprovalTimeout))
		}
		o.timeout = d
	}
	if len(problems) > 0 {
		return nil, temporal.NewNonRetryableApplicationError("input: "+errors.Join(toErrors(problems)...).Error(), failure.TypeConfig, nil)
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return o.status, nil }); err != nil {
		return nil, err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApprove, o.decide, workflow.UpdateHandlerOptions{Validator: o.validate})
	return o, err
}

func toErrors(msgs []string) []error {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = errors.New(m)
	}
	return errs
}

// validate refuses, before it reaches history, a decision that names no
// one or comes after the onboarding was decided.
func (o *onboarding) validate(_ workflow.Context, d Decision) error {
	switch {
	case d.By == "":
		return errors.New(`a decision names who made it: {"approved": true, "by": "ana"}`)
	case o.status.Decision != nil:
		return fmt.Errorf("already decided by %s (approved: %v)", o.status.Decision.By, o.status.Decision.Approved)
	case o.status.Stage == stageDone || o.status.Stage == stageUndoing:
		return fmt.Errorf("too late: the onboarding is %s", o.status.Stage)
	}
	return nil
}

// decide records the decision; the workflow acts on it.
func (o *onboarding) decide(_ workflow.Context, d Decision) (Status, error) {
	o.status.Decision = &d
	return o.status, nil
}

// create stages, validates and transforms the contact and creates its
// billing customer.
func (o *onboarding) create(ctx workflow.Context, run *steps.Run) (*steps.Page, error) {
	o.status.Stage = stageCreating
	page, err := run.Stage(ctx, o.contact)
	if err != nil {
		return nil, err
	}
	if v, err := run.Validate(ctx, page); err != nil {
		return nil, err
	} else if v.Invalid > 0 {
		return nil, fmt.Errorf("%w: quarantined with its reasons (tether quarantine --integration %s)", errInvalid, o.integration)
	}
	if t, err := run.Transform(ctx, page); err != nil {
		return nil, err
	} else if t.Invalid > 0 {
		return nil, fmt.Errorf("%w: its mapping failed; quarantined (tether quarantine --integration %s)", errInvalid, o.integration)
	}
	out, err := run.ApplyStep(ctx, page, "billing")
	if err != nil {
		return nil, err
	}
	if out.Rejected > 0 {
		return nil, fmt.Errorf("%w: the billing API refused it; quarantined (tether quarantine --integration %s)", errInvalid, o.integration)
	}
	return page, nil
}

// await waits for a decision until the approval deadline: nil when none
// came, an error when the workflow was cancelled meanwhile.
func (o *onboarding) await(ctx workflow.Context) (*Decision, error) {
	o.status.Stage = stageAwaiting
	o.status.Deadline = workflow.Now(ctx).Add(o.timeout)
	ok, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{Timeout: o.timeout,
		TimerOptions: workflow.TimerOptions{Summary: approveSummary}}, func() bool { return o.status.Decision != nil })
	if err != nil || !ok {
		return nil, err
	}
	return o.status.Decision, nil
}
