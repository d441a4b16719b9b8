//go:build tools

// Package tools records the command this module builds (Prometheus' promtool, see
// tests/tools/build.sh), so that `go mod tidy` keeps its dependencies. The build tag keeps it out
// of every real build.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
