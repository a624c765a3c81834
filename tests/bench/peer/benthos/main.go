// Command benthoswrap is Benthos v4.27 with the components the peer
// benchmark's config (bench.yaml) uses: the generate input, the http,
// mapping, unarchive and json_schema processors, the switch, file and
// sql_insert outputs, and lib/pq for PostgreSQL. It is a Go module of its
// own, built by tests/bench/cmd/bench into .tether/bench/benthos-peer.
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	_ "github.com/benthosdev/benthos/v4/public/components/sql/base"
	"github.com/benthosdev/benthos/v4/public/service"
	_ "github.com/lib/pq"
)

func main() { service.RunCLI(context.Background()) }
