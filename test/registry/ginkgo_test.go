package registrytest

import "github.com/onsi/ginkgo/v2"

// The harness must stay usable from Ginkgo suites through GinkgoT().
var _ T = ginkgo.FullGinkgoTInterface(nil)
