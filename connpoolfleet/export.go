package connpoolfleet

// The methods below are what the exporters read of a member:
// connpoolprom.FleetMember and connpoolotel.FleetMember are interfaces of
// these four methods, in plain types, so that those modules depend neither
// on this one nor on Redis. Each is one read of the member's Stats, under
// its lock.

// FleetNames returns the budget's name and the member's ID, the labels of
// its metrics.
func (m *Member) FleetNames() (budget, member string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Budget, m.st.ID
}

// FleetState returns the member's lease state as State.String gives it:
// "joining", "learning", "granted", "fenced" or "left".
func (m *Member) FleetState() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.State.String()
}

// FleetShares returns what Stats has as Grant, Target, Caps, BudgetSize and
// Demand: the member's grant, its target, the sum of its pools' caps, the
// budget B and its smoothed demand.
func (m *Member) FleetShares() (grant, target, caps, budget int, demand float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Grant, m.st.Target, m.st.Caps, m.st.BudgetSize, m.st.Demand
}

// FleetCounts returns what Stats has as Renews, RenewErrors and Fences.
func (m *Member) FleetCounts() (renews, renewErrors, fences int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Renews, m.st.RenewErrors, m.st.Fences
}
