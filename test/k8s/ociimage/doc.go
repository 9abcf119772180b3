// Package ociimage makes the container images of the Kubernetes test bed
// without a container engine: a static Go binary (BuildStatic) in one
// layer of an OCI image (FromFiles), pushed over plain HTTP to a
// Distribution registry on the loopback interface (Push).
//
// PushPause and PushServe make the two images a pod of the serving
// backend needs: the pod sandbox's pause image (test/k8s/cmd/pause) and
// the example TF Serving-compatible model server of examples/djia30.
//
// Images are OCI (manifest application/vnd.oci.image.manifest.v1+json,
// config application/vnd.oci.image.config.v1+json, one gzip layer
// application/vnd.oci.image.layer.v1.tar+gzip) for linux and the host's
// GOARCH. Every time in them is fixed (Config.Created, the Unix epoch by
// default), so the same files and Config give the same digest.
package ociimage
