package forecaster

// LoadBatch is loadBatch for the external tests.
var LoadBatch = loadBatch
