// Package deps pins the third-party modules that branchml's packages are being
// built on, so that go.mod keeps them while those packages are written. It is
// removed once every module here is imported by real code.
package deps

import (
	_ "github.com/bndr/gojenkins"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-github/v62/github"
	_ "github.com/kubeflow/pipelines/api/v2alpha1/go/pipelinespec"
	_ "github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/experiment_client"
	_ "github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_client"
	_ "github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_upload_client"
	_ "github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_client"
	_ "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	_ "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/sirupsen/logrus"
	_ "github.com/urfave/cli/v2"
	_ "gonum.org/v1/gonum/mat"
	_ "k8s.io/client-go/dynamic"
	_ "k8s.io/client-go/dynamic/fake"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "sigs.k8s.io/yaml"
)
