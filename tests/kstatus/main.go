// kstatus computes sigs.k8s.io/cli-utils' kstatus (pkg/kstatus/status.Compute, the library Flux's
// health checks are built on) for Kubernetes objects, so that tests can check what Flux and
// `kstatus`-based tools make of the operator's status conditions.
//
// Input on stdin: one JSON object with apiVersion and kind, either a single object or a List
// (`kubectl get -o json`).
// Output on stdout: one JSON line per object, in input order:
//
//	{"namespace":"ns","name":"relay","status":"Failed","message":"..."}
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	// Decoded as the API machinery decodes objects (integers stay int64), as an object or a List.
	decoded, err := runtime.Decode(unstructured.UnstructuredJSONScheme, raw)
	if err != nil {
		return fmt.Errorf("stdin is not a Kubernetes object or List: %w", err)
	}
	var objects []unstructured.Unstructured
	switch o := decoded.(type) {
	case *unstructured.UnstructuredList:
		objects = o.Items
	case *unstructured.Unstructured:
		objects = []unstructured.Unstructured{*o}
	default:
		return fmt.Errorf("unexpected %T", decoded)
	}
	enc := json.NewEncoder(out)
	for i := range objects {
		u := &objects[i]
		res, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		if err := enc.Encode(line{u.GetNamespace(), u.GetName(), res.Status.String(), res.Message}); err != nil {
			return err
		}
	}
	return nil
}
