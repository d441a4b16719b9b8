//go:build tools

// Package tools records the commands this module builds, so that `go mod tidy`
// keeps their dependencies. The build tag keeps it out of every real build.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
