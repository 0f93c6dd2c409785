package datastore

import "testing"

func BenchmarkProbePages(b *testing.B) {
	s, _ := newStore(b, Options{Slots: 1024, NoSync: true, Logger: discard()})
	benchWriters(b, s, 64)
	st := s.db.Stats()
	b.ReportMetric(float64(st.TxStats.GetWrite())/float64(s.commits.Load()), "pages/commit")
	b.ReportMetric(float64(st.TxStats.GetSpill())/float64(s.commits.Load()), "spills/commit")
}
