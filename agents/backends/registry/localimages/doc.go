// Package localimages opens the image cache of a configuration: images
// pulled by digest and unpacked under <stateDir>/images, with references to
// the embedded registry resolved to its current loopback address. The local
// pipeline runner runs task images from it and the local serving backend
// runs the serving component's binary from it.
//
// As part of the registry backend it imports only packages of that concern
// (agents/backends/registry/...), agents/records, agents/config and helpers;
// never a stage, a command or another concern.
package localimages
