// Package kubernetes holds airlockd's Kubernetes manifests, a kustomize
// base and overlays, and the test that renders each, decodes every object
// strictly into the Kubernetes API types and holds it to the privileges,
// probes and flags README.md justifies; and airlockd-image.sh, which
// builds the image the DaemonSet runs, with its test (build tag
// airlockdimage).
package kubernetes
