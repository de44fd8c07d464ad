// Package composetest runs the repository's docker-compose.yml for real: a
// Docker engine started by the test (internal/dockertest), every image built
// on this machine (the Headstart images from the Dockerfile, the public
// images' roles from deploy/docker/offline), the stack brought up and checked
// through its own published ports, and taken down again. `make compose-test`
// runs it.
package composetest
