// Package imagecache pulls container images by digest and unpacks their
// layers into a content-addressed directory cache, so that the local
// pipeline runner can run an image's command as a plain process.
//
// Layout under the cache root:
//
//	<root>/sha256/<hex>/rootfs        the unpacked file system of the image
//	<root>/sha256/<hex>/config.json   the image's OCI config file (env, entrypoint …)
//
// where <hex> is the manifest digest. An entry appears atomically: it is
// unpacked into a temporary directory under <root>/tmp and renamed into place.
// Unpacking refuses tar entries that escape the root (".." paths), symbolic
// links whose target is absolute or leaves the root, hard links to paths
// outside it, and device files; OCI whiteouts (".wh.<name>" and the opaque
// ".wh..wh..opq") delete what lower layers put there.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package imagecache
