package forecasting

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// LSTM is a small long short-term memory network trained on the series with
// gonum: one layer of Hidden cells reads the last Window values (standardised)
// and a linear output predicts the next; training is backpropagation through
// time with Adam over Epochs passes, from a seeded initialisation, so it is
// deterministic. Forecasts beyond one step feed predictions back in.
type LSTM struct {
	// Hidden cells. If not set, 8.
	Hidden int
	// Window of past values the network reads. If not set, 8.
	Window int
	// Epochs of training. If not set, 60.
	Epochs int
	// LearningRate of Adam. If not set, 0.01.
	LearningRate float64
	// Seed of the initial weights.
	Seed uint64

	w          *mat.Dense    // 4H × (1+H): gates i, f, o, g from [x; h]
	b          *mat.VecDense // 4H
	v          *mat.VecDense // H: output weights
	bv         float64
	mean, std  float64
	last       []float64 // the last Window standardised values
	TrainedMSE float64   // training loss of the last epoch (standardised units)
}

// Name implements SeriesModel.
func (*LSTM) Name() string { return "lstm" }

func (l *LSTM) defaults() {
	if l.Hidden <= 0 {
		l.Hidden = 8
	}
	if l.Window <= 0 {
		l.Window = 8
	}
	if l.Epochs <= 0 {
		l.Epochs = 60
	}
	if l.LearningRate <= 0 {
		l.LearningRate = 0.01
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// step is one cell update's values, kept for backpropagation.
type lstmStep struct {
	xh                *mat.VecDense // [x; h_prev]
	i, f, o, g, c, ct []float64     // gates, cell state, tanh(cell)
	cPrev, h          []float64
}

func (l *LSTM) forward(xs []float64) []lstmStep {
	H := l.Hidden
	h := make([]float64, H)
	c := make([]float64, H)
	steps := make([]lstmStep, len(xs))
	z := mat.NewVecDense(4*H, nil)
	for t, x := range xs {
		xh := mat.NewVecDense(1+H, append([]float64{x}, h...))
		z.MulVec(l.w, xh)
		z.AddVec(z, l.b)
		s := lstmStep{xh: xh, cPrev: c, i: make([]float64, H), f: make([]float64, H), o: make([]float64, H), g: make([]float64, H),
			c: make([]float64, H), ct: make([]float64, H), h: make([]float64, H)}
		for k := 0; k < H; k++ {
			s.i[k] = sigmoid(z.AtVec(k))
			s.f[k] = sigmoid(z.AtVec(H + k))
			s.o[k] = sigmoid(z.AtVec(2*H + k))
			s.g[k] = math.Tanh(z.AtVec(3*H + k))
			s.c[k] = s.f[k]*c[k] + s.i[k]*s.g[k]
			s.ct[k] = math.Tanh(s.c[k])
			s.h[k] = s.o[k] * s.ct[k]
		}
		steps[t] = s
		h, c = s.h, s.c
	}
	return steps
}

func (l *LSTM) output(h []float64) float64 { return mat.Dot(l.v, mat.NewVecDense(len(h), h)) + l.bv }

// Fit implements SeriesModel.
func (l *LSTM) Fit(y []float64) error {
	l.defaults()
	if len(y) < l.Window+4 {
		return ErrTooShort
	}
	l.mean, l.std = meanStd(y)
	if l.std == 0 {
		l.std = 1
	}
	s := make([]float64, len(y))
	for i, v := range y {
		s[i] = (v - l.mean) / l.std
	}
	H := l.Hidden
	rng := rand.New(rand.NewPCG(l.Seed, 0x5eed))
	scale := 1 / math.Sqrt(float64(1+H))
	l.w = mat.NewDense(4*H, 1+H, nil)
	for r := 0; r < 4*H; r++ {
		for c := 0; c < 1+H; c++ {
			l.w.Set(r, c, (2*rng.Float64()-1)*scale)
		}
	}
	l.b = mat.NewVecDense(4*H, nil)
	for k := 0; k < H; k++ {
		l.b.SetVec(H+k, 1) // forget gates start open
	}
	l.v = mat.NewVecDense(H, nil)
	for k := 0; k < H; k++ {
		l.v.SetVec(k, (2*rng.Float64()-1)*scale)
	}
	l.bv = 0

	opt := newAdam(l.LearningRate, 4*H*(1+H)+4*H+H+1)
	gw := mat.NewDense(4*H, 1+H, nil)
	gb := mat.NewVecDense(4*H, nil)
	gv := mat.NewVecDense(H, nil)
	dz := mat.NewVecDense(4*H, nil)
	dxh := mat.NewVecDense(1+H, nil)
	for epoch := 0; epoch < l.Epochs; epoch++ {
		var loss float64
		for start := 0; start+l.Window < len(s); start++ {
			steps := l.forward(s[start : start+l.Window])
			last := steps[len(steps)-1]
			pred := l.output(last.h)
			d := pred - s[start+l.Window]
			loss += d * d
			// Backpropagation through time.
			gw.Zero()
			gb.Zero()
			gv.ScaleVec(d, mat.NewVecDense(H, last.h))
			gbv := d
			dh := make([]float64, H)
			for k := range dh {
				dh[k] = d * l.v.AtVec(k)
			}
			dc := make([]float64, H)
			for t := len(steps) - 1; t >= 0; t-- {
				st := steps[t]
				for k := 0; k < H; k++ {
					do := dh[k] * st.ct[k]
					dck := dc[k] + dh[k]*st.o[k]*(1-st.ct[k]*st.ct[k])
					di, df, dg := dck*st.g[k], dck*st.cPrev[k], dck*st.i[k]
					dz.SetVec(k, di*st.i[k]*(1-st.i[k]))
					dz.SetVec(H+k, df*st.f[k]*(1-st.f[k]))
					dz.SetVec(2*H+k, do*st.o[k]*(1-st.o[k]))
					dz.SetVec(3*H+k, dg*(1-st.g[k]*st.g[k]))
					dc[k] = dck * st.f[k]
				}
				gw.RankOne(gw, 1, dz, st.xh)
				gb.AddVec(gb, dz)
				dxh.MulVec(l.w.T(), dz)
				for k := 0; k < H; k++ {
					dh[k] = dxh.AtVec(1 + k)
				}
			}
			opt.step(l.w.RawMatrix().Data, gw.RawMatrix().Data, l.b.RawVector().Data, gb.RawVector().Data,
				l.v.RawVector().Data, gv.RawVector().Data, &l.bv, gbv)
		}
		l.TrainedMSE = loss / float64(len(s)-l.Window)
	}
	l.last = append([]float64(nil), s[len(s)-l.Window:]...)
	return nil
}

// Forecast implements SeriesModel.
func (l *LSTM) Forecast(h int) []float64 {
	window := append([]float64(nil), l.last...)
	out := make([]float64, h)
	for k := 0; k < h; k++ {
		steps := l.forward(window)
		p := l.output(steps[len(steps)-1].h)
		out[k] = p*l.std + l.mean
		window = append(window[1:], p)
	}
	return out
}

func meanStd(y []float64) (float64, float64) {
	var m float64
	for _, v := range y {
		m += v
	}
	m /= float64(len(y))
	var ss float64
	for _, v := range y {
		ss += (v - m) * (v - m)
	}
	return m, math.Sqrt(ss / float64(len(y)))
}

// adam is the Adam optimiser over a flat list of parameter groups.
type adam struct {
	lr, b1, b2, eps float64
	m, v            []float64
	t               int
}

func newAdam(lr float64, n int) *adam {
	return &adam{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, m: make([]float64, n), v: make([]float64, n)}
}

// step updates params (w, b, v slices and the scalar bv) with their gradients.
func (a *adam) step(w, gw, b, gb, v, gv []float64, bv *float64, gbv float64) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	i := 0
	update := func(p *float64, g float64) {
		g = math.Max(math.Min(g, 5), -5) // clip exploding gradients
		a.m[i] = a.b1*a.m[i] + (1-a.b1)*g
		a.v[i] = a.b2*a.v[i] + (1-a.b2)*g*g
		*p -= a.lr * (a.m[i] / c1) / (math.Sqrt(a.v[i]/c2) + a.eps)
		i++
	}
	for k := range w {
		update(&w[k], gw[k])
	}
	for k := range b {
		update(&b[k], gb[k])
	}
	for k := range v {
		update(&v[k], gv[k])
	}
	update(bv, gbv)
}
