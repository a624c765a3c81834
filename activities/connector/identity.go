package connector

import (
	"context"
	"encoding/json"

	"github.com/tetherflow/tether/activities/lib/postgres"
)

// Identity is what the identity map knows of one record in one
// destination system (a namespace): the id the destination gave it and
// the last row sent there.
type Identity struct {
	Key        string
	ExternalID string
	// RowHash is the hash of LastRow; a row with the same hash is unchanged.
	RowHash string
	LastRow json.RawMessage
	// RunID is the run that last sent the record.
	RunID string
}

// IdentityImage is what a run's batch is about to change for one record
// in a remote destination: the identity before the run (Existed false: the
// run creates the object) and the row it sends, so a compensation can
// delete, restore or reverse it.
type IdentityImage struct {
	Key            string
	Seq            int
	Existed        bool
	Prior          Identity
	IdempotencyKey string
	SentRow        json.RawMessage
	// SentID is the id the destination gave the row sent (once known).
	SentID string
}

// IdentityMap is where a sink calling a remote API keeps what it knows of
// the objects it wrote: per namespace (one destination system, shared by
// the integrations that write the same objects), the id the API gave each
// record key and the row last sent; and, for an atomic run, an image of
// every record before a batch changes it. The worker's state store
// implements it in the PostgreSQL that holds the run's state, so what the
// calls did commits in the batch's own transaction (the q arguments).
type IdentityMap interface {
	// LookupIdentities returns the identities of keys, by key; unknown
	// keys are absent.
	LookupIdentities(ctx context.Context, q postgres.Querier, namespace string, keys []string) (map[string]Identity, error)
	// SaveIdentities records the ids and rows runID just sent.
	SaveIdentities(ctx context.Context, q postgres.Querier, namespace, runID string, ids []Identity) error
	// RecordIdentityImages keeps an image of every record batch seq is
	// about to send; with firstPerRun, a record imaged by an earlier batch
	// of the run keeps that image.
	RecordIdentityImages(ctx context.Context, q postgres.Querier, runID, namespace string, seq int, firstPerRun bool, images []IdentityImage) error
	// SetImageSentIDs records the ids the destination gave batch seq's rows.
	SetImageSentIDs(ctx context.Context, q postgres.Querier, runID, namespace string, seq int, sentIDs map[string]string) error
	// IdentityImages returns the images batch seq left, in key order.
	IdentityImages(ctx context.Context, runID, namespace string, seq int) ([]IdentityImage, error)
	// UndoIdentity consumes one image once its call is undone.
	UndoIdentity(ctx context.Context, runID, namespace string, im IdentityImage) error
	// DropIdentityImages forgets the images of records whose calls the
	// destination refused (nothing to undo).
	DropIdentityImages(ctx context.Context, q postgres.Querier, runID, namespace string, images []IdentityImage) error
	// LastIdentityImageSeq returns the highest batch of runID with images
	// left in namespace (0 when none).
	LastIdentityImageSeq(ctx context.Context, runID, namespace string) (int, error)
	// ForgetIdentityImages drops the images runID left in namespace.
	ForgetIdentityImages(ctx context.Context, runID, namespace string) error
}
