// Package kfp implements pipelines.Backend on the Kubeflow Pipelines API
// server's v2beta1 REST API through its generated go_http_client.
package kfp
