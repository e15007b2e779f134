package connpoolprom

// Collect is collect, for tests that feed the collector made-up Stats.
var Collect = collect
