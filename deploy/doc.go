// Package deploy holds what it takes to run leadflow outside a Go toolchain:
// the Docker Compose file, the Kubernetes manifests (leadflow, its migration
// Job, KEDA autoscaling and a three-server NATS cluster) and their tests,
// which check them against the configuration and the subjects leadflow
// actually uses. It has no Go API.
package deploy
