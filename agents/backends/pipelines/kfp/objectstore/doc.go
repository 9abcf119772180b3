// Package objectstore reads the artifacts Kubeflow Pipelines v2 keeps in
// its pipeline root, an S3-compatible bucket (MinIO or SeaweedFS as KFP
// installs them, or AWS S3), through minio-go
// (github.com/minio/minio-go/v7, Apache-2.0). Artifact URIs are KFP's:
// "minio://<bucket>/<key>" or "s3://<bucket>/<key>". It also finds an
// artifact without ML Metadata, by listing the run's folder of the
// pipeline root ("<root>/<pipeline>/<run-id>/<task>/…/<output>", the
// layout of KFP's driver in backend/src/v2/driver).
//
// As part of the kfp backend it imports only packages of the pipelines
// concern, agents/records, agents/config and helpers.
package objectstore
