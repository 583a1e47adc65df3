// Package images builds Airlock's sandbox images as OCI image-layout
// tarballs, straight from static binaries on the host.
//
// There is no Docker and no registry in the path: the broker (or a test)
// calls Build and imports the tarball into its own containerd. Images are
// content-addressed and reproducible, so a rebuild from the same binaries is
// byte-identical and yields the same manifest digest. That lets the audit log
// name an image by digest and lets anyone re-derive it.
package images
