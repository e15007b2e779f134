package addrset

// Outlier ejection, after Envoy's outlier detection. The signal is the
// end of each conn to an address: a failure when it ended broken,
// unhealthy or rejected by a checkout peek, else a success (it ended for
// its age, idleness, the pool's size...). An address is ejected when
// Consecutive of its conns failed in a row, or when, over a window of
// Window, at least MinVolume conns ended and more than Rate of them
// failed. An ejected address is not dialed and its conns are not lent
// (Endpoint.Status) until Readmit finds its time over: Base, doubled at
// each ejection that follows the last within Max of its readmission, up
// to Max. At most MaxPercent of the set is ejected at once, rounded down,
// and never all of it: of three addresses at 50%, one.

// Ejection is the policy, in the caller's clock ticks. Its zero value
// turns ejection off; Set.Eject fills the zero fields of one that is on.
type Ejection struct {
	Consecutive int     // failures in a row that eject; < 0: not by streak
	Rate        float64 // failure share over a window that ejects; < 0: not by rate
	MinVolume   int     // conn ends a window needs before Rate is judged
	Window      int64   // length of a rate window
	Base        int64   // first ejection time
	Max         int64   // longest ejection time
	MaxPercent  int     // most of the set ejected at once, in percent
}

// outlier is an address's ejection state.
type outlier struct {
	streak          int   // failures in a row
	winStart        int64 // start of the current rate window
	winEnds, winBad int   // conn ends in it, and failures among them
	level           int   // ejections since it last stayed in long enough: the doubling
	since, until    int64 // start and end of the current ejection
	readmitted      int64 // when it last came back
	count           int64 // ejections
}

// Eject turns ejection on with policy e; nothing is ejected until conns
// end. Zero durations and counts are the caller's to default; Eject only
// keeps them sane: a Base of at least 1, a Max of at least Base.
func (s *Set) Eject(e Ejection) {
	e.Base = max(e.Base, 1)
	e.Max = max(e.Max, e.Base)
	e.Window = max(e.Window, 1)
	s.ej = e
}

// maxEjected is how many addresses may be ejected at once.
func (s *Set) maxEjected() int {
	n := len(s.eps)
	return min(n*s.ej.MaxPercent/100, n-1)
}

// numEjected counts the ejected addresses of the current set.
func (s *Set) numEjected() int {
	k := 0
	for _, ep := range s.eps {
		if ep.ejected.Load() {
			k++
		}
	}
	return k
}

// ConnEnded records that a conn to ep ended, failed or not, at now, and
// reports whether it ejected ep: the caller then stops lending ep's conns
// (Status tells it so already) and closes its idle ones. Ends while ep is
// ejected or removed are not counted: its conns are being closed by the
// pool, not failing on their own.
func (s *Set) ConnEnded(ep *Endpoint, failed bool, now int64) (ejected bool) {
	if s.ej.MaxPercent <= 0 || ep.ejected.Load() || ep.removed.Load() {
		return false
	}
	o := &ep.out
	if now-o.winStart >= s.ej.Window {
		o.winStart, o.winEnds, o.winBad = now, 0, 0
	}
	o.winEnds++
	if failed {
		o.streak++
		o.winBad++
	} else {
		o.streak = 0
	}
	byStreak := s.ej.Consecutive > 0 && o.streak >= s.ej.Consecutive
	byRate := s.ej.Rate >= 0 && o.winEnds >= max(s.ej.MinVolume, 1) &&
		float64(o.winBad) > s.ej.Rate*float64(o.winEnds)
	if !failed || !(byStreak || byRate) || s.numEjected() >= s.maxEjected() {
		return false
	}
	if o.level > 0 && now-o.readmitted >= s.ej.Max {
		o.level = 0 // stayed in long enough: start the doubling over
	}
	d := s.ej.Max
	if o.level < 62 {
		if b := s.ej.Base << o.level; b > 0 && b < d {
			d = b
		}
	}
	o.level++
	o.since, o.until = now, now+d
	o.count++
	o.streak, o.winStart, o.winEnds, o.winBad = 0, now, 0, 0
	s.ejected++
	ep.ejected.Store(true)
	s.news = append(s.news, ep)
	return true
}

// Readmit returns the addresses ejected since its last call, in order,
// then readmits the ejected addresses whose time is over at now and
// returns them, after those readmitted early since its last call
// (readmitExcess), with when the next one's time is over (0: none
// ejected). One caller reporting both keeps each address's ejection
// before its readmission. Removed addresses are readmitted too, so that
// one that comes back is not ejected for a past it no longer has.
func (s *Set) Readmit(now int64) (ejected, back []*Endpoint, next int64) {
	ejected, s.news = s.news, nil
	back, s.early = s.early, nil
	for _, list := range [][]*Endpoint{s.eps, s.draining} {
		for _, ep := range list {
			if !ep.ejected.Load() {
				continue
			}
			if now >= ep.out.until {
				ep.readmit(now)
				back = append(back, ep)
			} else if next == 0 || ep.out.until < next {
				next = ep.out.until
			}
		}
	}
	return ejected, back, next
}

// readmit takes ep back into use at now, its failures forgotten.
func (ep *Endpoint) readmit(now int64) {
	ep.ejected.Store(false)
	ep.out.readmitted = now
	ep.out.winStart, ep.out.winEnds, ep.out.winBad, ep.out.streak = now, 0, 0, 0
}

// readmitExcess readmits at now, before their time, as many ejected
// addresses as the set holds beyond maxEjected, those whose ejection ends
// first: a resolve that shrank the set may have left it with more, or
// with only ejected addresses, each of whose fresh conns the pool would
// close (TestResolveToEjectedOnlyReadmits). The next Readmit reports them.
func (s *Set) readmitExcess(now int64) {
	for s.numEjected() > max(s.maxEjected(), 0) {
		var first *Endpoint
		for _, ep := range s.eps {
			if ep.ejected.Load() && (first == nil || ep.out.until < first.out.until) {
				first = ep
			}
		}
		first.readmit(now)
		s.early = append(s.early, first)
	}
}

// EjectedUntil is when ep's ejection ends; meaningful while it is ejected.
func (ep *Endpoint) EjectedUntil() int64 { return ep.out.until }

// EjectionTime is how long ep's last ejection lasts.
func (ep *Endpoint) EjectionTime() int64 { return ep.out.until - ep.out.since }
