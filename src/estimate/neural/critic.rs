//! The critic: a small MLP (separable towers or one joint network) with hand-derived gradients,
//! and its Adam optimiser.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Act {
    Relu,
    Tanh,
    Leaky,
}

impl Act {
    pub(super) fn parse(s: &str) -> Act {
        match s {
            "tanh" => Act::Tanh,
            "leaky_relu" => Act::Leaky,
            _ => Act::Relu,
        }
    }

    #[inline]
    pub(super) fn f(self, z: f64) -> f64 {
        match self {
            Act::Relu => z.max(0.0),
            Act::Tanh => z.tanh(),
            Act::Leaky => {
                if z > 0.0 {
                    z
                } else {
                    0.01 * z
                }
            }
        }
    }

    /// Derivative from the pre-activation `z` and the activation `a = f(z)`.
    #[inline]
    pub(super) fn df(self, z: f64, a: f64) -> f64 {
        match self {
            Act::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Act::Tanh => 1.0 - a * a,
            Act::Leaky => {
                if z > 0.0 {
                    1.0
                } else {
                    0.01
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// x tower uses layers [0, nx), y tower [nx, nx + ny); each layer = (W, b).
    Separable { nx: usize },
    /// p[0] = Wx, p[1] = Wy, p[2] = b1, then (W, b) pairs of the rest.
    Concat,
}

/// Parameters: a flat list of matrices (biases are 1×n) so that Adam is one loop.
#[derive(Debug, Clone)]
pub(super) struct Net {
    pub(super) p: Vec<Array2<f64>>,
    pub(super) act: Act,
    pub(super) kind: Kind,
}

pub(super) fn init_matrix(rows: usize, cols: usize, bound: f64, g: &mut SplitMix64) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || (2.0 * g.uniform() - 1.0) * bound)
}

/// Dense layers (W: in×out, b: 1×out) with U(−1/√fan_in, 1/√fan_in) init (PyTorch's default).
pub(super) fn dense_layers(widths: &[usize], g: &mut SplitMix64) -> Vec<Array2<f64>> {
    let mut p = Vec::new();
    for w in widths.windows(2) {
        let bound = 1.0 / (w[0] as f64).sqrt();
        p.push(init_matrix(w[0], w[1], bound, g));
        p.push(init_matrix(1, w[1], bound, g));
    }
    p
}

/// Forward cache of a tower: `acts[l]` = input of layer l (acts[0] = the data), `pre[l]` = the
/// pre-activation of hidden layer l; the output (linear) is returned separately.
pub(super) struct Cache {
    pub(super) acts: Vec<Array2<f64>>,
    pub(super) pre: Vec<Array2<f64>>,
}

pub(super) fn tower_forward(p: &[Array2<f64>], x: Array2<f64>, act: Act) -> (Cache, Array2<f64>) {
    let nl = p.len() / 2;
    let mut acts = vec![x];
    let mut pre = Vec::with_capacity(nl);
    for l in 0..nl {
        let mut z = acts[l].dot(&p[2 * l]);
        z += &p[2 * l + 1];
        if l + 1 == nl {
            return (Cache { acts, pre }, z);
        }
        let a = z.mapv(|v| act.f(v));
        pre.push(z);
        acts.push(a);
    }
    unreachable!("a tower has at least one layer")
}

/// Backward through a tower; writes dW, db into `grads`; returns d(input) when `need_input`.
pub(super) fn tower_backward(
    p: &[Array2<f64>],
    cache: &Cache,
    dout: Array2<f64>,
    act: Act,
    grads: &mut [Array2<f64>],
    need_input: bool,
) -> Option<Array2<f64>> {
    let nl = p.len() / 2;
    let mut d = dout;
    for l in (0..nl).rev() {
        grads[2 * l] = cache.acts[l].t().dot(&d);
        grads[2 * l + 1] = d.sum_axis(Axis(0)).insert_axis(Axis(0));
        if l == 0 && !need_input {
            return None;
        }
        let mut din = d.dot(&p[2 * l].t());
        if l > 0 {
            Zip::from(&mut din)
                .and(&cache.pre[l - 1])
                .and(&cache.acts[l])
                .for_each(|g, &z, &a| *g *= act.df(z, a));
        }
        d = din;
    }
    Some(d)
}

impl Net {
    pub(super) fn new(dx: usize, dy: usize, p: &Params, g: &mut SplitMix64) -> Net {
        let act = Act::parse(&p.activation);
        if p.critic == "concat" {
            let h1 = p.hidden.first().copied().unwrap_or(1);
            let bound = 1.0 / ((dx + dy) as f64).sqrt();
            let mut params = vec![
                init_matrix(dx, h1, bound, g),
                init_matrix(dy, h1, bound, g),
                init_matrix(1, h1, bound, g),
            ];
            if p.hidden.is_empty() {
                // linear critic: a 1-wide first layer followed by a 1×1 output layer
                params.extend(dense_layers(&[1, 1], g));
            } else {
                let mut widths = p.hidden.clone();
                widths.push(1);
                params.extend(dense_layers(&widths, g));
            }
            Net {
                p: params,
                act,
                kind: Kind::Concat,
            }
        } else {
            let mut wx = vec![dx];
            wx.extend(&p.hidden);
            wx.push(p.embed_dim);
            let mut wy = vec![dy];
            wy.extend(&p.hidden);
            wy.push(p.embed_dim);
            let mut params = dense_layers(&wx, g);
            let nx = params.len();
            params.extend(dense_layers(&wy, g));
            Net {
                p: params,
                act,
                kind: Kind::Separable { nx },
            }
        }
    }

    /// Scores S (b×b) for rows x (b×dx), y (b×dy); with `grad`, also the backward closure data.
    pub(super) fn scores(&self, x: ArrayView2<f64>, y: ArrayView2<f64>) -> Array2<f64> {
        self.forward(x, y).0
    }

    pub(super) fn forward(&self, x: ArrayView2<f64>, y: ArrayView2<f64>) -> (Array2<f64>, Fwd) {
        let b = x.nrows();
        match self.kind {
            Kind::Separable { nx } => {
                let (cx, gx) = tower_forward(&self.p[..nx], x.to_owned(), self.act);
                let (cy, hy) = tower_forward(&self.p[nx..], y.to_owned(), self.act);
                let s = gx.dot(&hy.t());
                (s, Fwd::Sep { cx, cy, gx, hy })
            }
            Kind::Concat => {
                let a = x.dot(&self.p[0]);
                let c = y.dot(&self.p[1]);
                let h1 = a.ncols();
                let mut z1 = Array2::<f64>::zeros((b * b, h1));
                for i in 0..b {
                    for j in 0..b {
                        let mut row = z1.row_mut(i * b + j);
                        Zip::from(&mut row)
                            .and(a.row(i))
                            .and(c.row(j))
                            .and(self.p[2].row(0))
                            .for_each(|z, &ai, &cj, &bb| *z = ai + cj + bb);
                    }
                }
                let a1 = z1.mapv(|v| self.act.f(v));
                let (cache, out) = tower_forward(&self.p[3..], a1, self.act);
                let s = out.into_shape_with_order((b, b)).expect("b×b scores");
                (
                    s,
                    Fwd::Cat {
                        z1,
                        cache,
                        x: x.to_owned(),
                        y: y.to_owned(),
                    },
                )
            }
        }
    }

    /// Gradient of a scalar objective with respect to every parameter, given dObj/dS.
    pub(super) fn backward(&self, fwd: Fwd, ds: Array2<f64>) -> Vec<Array2<f64>> {
        let mut grads: Vec<Array2<f64>> =
            self.p.iter().map(|m| Array2::zeros(m.raw_dim())).collect();
        match (self.kind, fwd) {
            (Kind::Separable { nx }, Fwd::Sep { cx, cy, gx, hy }) => {
                let dg = ds.dot(&hy);
                let dh = ds.t().dot(&gx);
                let (gxs, gys) = grads.split_at_mut(nx);
                tower_backward(&self.p[..nx], &cx, dg, self.act, gxs, false);
                tower_backward(&self.p[nx..], &cy, dh, self.act, gys, false);
            }
            (Kind::Concat, Fwd::Cat { z1, cache, x, y }) => {
                let b = ds.nrows();
                let dout = ds.into_shape_with_order((b * b, 1)).expect("b²×1");
                let mut da1 =
                    tower_backward(&self.p[3..], &cache, dout, self.act, &mut grads[3..], true)
                        .expect("input gradient");
                Zip::from(&mut da1)
                    .and(&z1)
                    .and(&cache.acts[0])
                    .for_each(|g, &z, &a| *g *= self.act.df(z, a));
                let h1 = da1.ncols();
                let mut d_a = Array2::<f64>::zeros((b, h1));
                let mut d_c = Array2::<f64>::zeros((b, h1));
                for i in 0..b {
                    let blk = da1.slice(s![i * b..(i + 1) * b, ..]);
                    d_a.row_mut(i).assign(&blk.sum_axis(Axis(0)));
                    d_c += &blk;
                }
                grads[0] = x.t().dot(&d_a);
                grads[1] = y.t().dot(&d_c);
                grads[2] = d_a.sum_axis(Axis(0)).insert_axis(Axis(0));
            }
            _ => unreachable!("forward cache matches the critic kind"),
        }
        grads
    }
}

pub(super) enum Fwd {
    Sep {
        cx: Cache,
        cy: Cache,
        gx: Array2<f64>,
        hy: Array2<f64>,
    },
    Cat {
        z1: Array2<f64>,
        cache: Cache,
        x: Array2<f64>,
        y: Array2<f64>,
    },
}

/// Adam (β1 0.9, β2 0.999, ε 1e-8), gradient *ascent*.
pub(super) struct Adam {
    pub(super) m: Vec<Array2<f64>>,
    pub(super) v: Vec<Array2<f64>>,
    pub(super) t: i32,
    pub(super) lr: f64,
    pub(super) wd: f64,
}

impl Adam {
    pub(super) fn new(net: &Net, lr: f64, wd: f64) -> Adam {
        Adam {
            m: net.p.iter().map(|a| Array2::zeros(a.raw_dim())).collect(),
            v: net.p.iter().map(|a| Array2::zeros(a.raw_dim())).collect(),
            t: 0,
            lr,
            wd,
        }
    }

    pub(super) fn step(&mut self, net: &mut Net, grads: &[Array2<f64>]) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        let lr = self.lr;
        let shrink = 1.0 - lr * self.wd;
        for ((p, g), (m, v)) in net
            .p
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            Zip::from(p).and(g).and(m).and(v).for_each(|p, &g, m, v| {
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *p = *p * shrink + lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
            });
        }
    }
}
