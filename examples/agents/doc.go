// Package agents holds example sandbox agents in Python and Node.js that
// follow docs/agent-contract.md, and mkrootfs.sh, which make agents runs to
// build each into an OCI image-layout tarball from Debian packages.
//
// Its tests (build tag agents; make agents-test, as root) read those
// images back as an import would and run them under runc with a shipped
// profile's spec.
package agents
