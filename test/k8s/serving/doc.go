// Package serving holds the tests of the Kubernetes serving backend on the
// test bed's node: real pods of the example serve image (the djia30 TF
// Serving stand-in, pulled from the test bed's registry on 127.0.0.1), the
// model on a CSI PVC, the ConfigMap synced by the kubelet, EndpointSlices
// made by the controller manager, and the deploy stage's canary driven
// through them. The tests reach the pods on 127.0.0.1 only (package
// podnet: port-forwards through the API server, and a kube-proxy stand-in
// per Service). There is no non-test code here.
package serving
