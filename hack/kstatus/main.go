// kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the library Flux and
// kpt wait with) computes for Kubernetes objects: one JSON line per object with its status
// (InProgress, Current, Failed, Terminating, NotFound, Unknown) and message.
//
//	kstatus [FILE...]    # YAML (multi-document) or JSON objects; stdin when no file or "-"
//
// A List (kind: ...List, items: [...], as kubectl get -o yaml prints several objects) is expanded. servelab's
// tests feed it the ServeBenchmark and QuantJob objects captured from real runs
// (tests/integration/test_gitops_gates.py); hack/build-binaries.sh builds it.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type line struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Error      string `json:"error,omitempty"`
}

// objects reads every document of r (YAML or JSON) as the apiserver's objects read through client-go:
// integers as int64 (kstatus reads metadata.generation and status.observedGeneration as int64).
func objects(r io.Reader) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		raw, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return out, err
		}
		if strings.TrimSpace(string(raw)) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return out, err
		}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return out, err
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		out = append(out, obj)
	}
}

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		files = []string{"-"}
	}
	enc := json.NewEncoder(os.Stdout)
	failed := false
	for _, f := range files {
		var r io.Reader = os.Stdin
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "kstatus:", err)
				os.Exit(2)
			}
			defer fh.Close()
			r = fh
		}
		objs, err := objects(r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", f, err)
			failed = true
		}
		for _, u := range objs {
			l := line{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
			res, err := status.Compute(u)
			if err != nil {
				l.Status, l.Error = "Unknown", err.Error()
			} else {
				l.Status, l.Message = res.Status.String(), res.Message
			}
			if err := enc.Encode(l); err != nil {
				fmt.Fprintln(os.Stderr, "kstatus:", err)
				os.Exit(2)
			}
		}
	}
	if failed {
		os.Exit(2)
	}
}
