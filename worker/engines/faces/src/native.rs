//! A CPU engine for the detector's plain convolution stack (conv with the following
//! affine folded in, optionally relu), working on a batch of feature maps of different
//! valid sizes.
//!
//! Each image of a batch occupies the top-left `valid` corner of its `rows x cols`
//! planes and everything outside it is zero. A layer computes only the valid output
//! cells of each image and reads inputs outside the image's valid corner as zero, so
//! every image gets exactly the values it gets on its own, whatever it is batched with.
//!
//! Work is split into (image, band of output rows) tasks shared by the threads; a task
//! builds the im2col matrix of its band (small enough to stay in cache), multiplies it
//! with the `gemm` crate and writes `relu(acc + bias)` straight into the output planes,
//! so bias, affine and relu cost no extra pass over the feature maps. Single-filter
//! layers (the detector's final 9x9 conv) are computed directly instead, because their
//! im2col matrix would be 81 times the input for a matrix-vector product.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Output columns (pixels) one im2col task aims for.
const TASK_PIXELS: usize = 1024;

/// A convolution with its bias (affine already folded in) and an optional relu.
#[derive(Debug, Clone)]
pub struct NativeConv {
    pub out_channels: usize,
    pub in_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// `[out_channels, in_channels * kernel * kernel]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub relu: bool,
}

/// Feature maps `[n, channels, rows, cols]`; image `i` is valid in its top-left
/// `valid[i] = (rows, cols)` corner and zero elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureBatch {
    pub data: Vec<f32>,
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    pub valid: Vec<(usize, usize)>,
}

impl FeatureBatch {
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    fn image_len(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// Plane `channel` of image `image`.
    pub fn plane(&self, image: usize, channel: usize) -> &[f32] {
        let start = image * self.image_len() + channel * self.rows * self.cols;
        &self.data[start..start + self.rows * self.cols]
    }
}

/// A raw output pointer shared by the worker threads; tasks write disjoint regions.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a region no other task touches, and the buffer outlives the
// scoped threads.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

#[derive(Debug, Clone, Copy)]
struct Task {
    image: usize,
    first_row: usize,
    end_row: usize,
}

impl NativeConv {
    /// Output length of one dimension (0 when the input is smaller than the kernel).
    pub fn out_len(&self, len: usize) -> usize {
        let padded = len + 2 * self.padding;
        if padded < self.kernel {
            0
        } else {
            (padded - self.kernel) / self.stride + 1
        }
    }

    pub fn forward(&self, x: &FeatureBatch, threads: usize) -> FeatureBatch {
        assert_eq!(x.channels, self.in_channels, "conv input channels");
        let valid: Vec<(usize, usize)> = x
            .valid
            .iter()
            .map(|&(r, c)| {
                let (r, c) = (self.out_len(r), self.out_len(c));
                if r == 0 || c == 0 {
                    (0, 0)
                } else {
                    (r, c)
                }
            })
            .collect();
        let rows = self.out_len(x.rows);
        let cols = self.out_len(x.cols);
        let mut out = FeatureBatch {
            data: vec![0.0; x.len() * self.out_channels * rows * cols],
            channels: self.out_channels,
            rows,
            cols,
            valid,
        };
        let mut tasks = Vec::new();
        for (image, &(r, c)) in out.valid.iter().enumerate() {
            if r == 0 {
                continue;
            }
            let band = (TASK_PIXELS / c).clamp(1, r);
            let mut first_row = 0;
            while first_row < r {
                let end_row = (first_row + band).min(r);
                tasks.push(Task {
                    image,
                    first_row,
                    end_row,
                });
                first_row = end_row;
            }
        }
        let next = AtomicUsize::new(0);
        let shared = SharedOut(out.data.as_mut_ptr());
        let out_geometry = (out.channels, out.rows, out.cols);
        let worker = || {
            let mut scratch = Scratch::default();
            loop {
                let t = next.fetch_add(1, Ordering::Relaxed);
                let Some(&task) = tasks.get(t) else { break };
                let out_cols = self.out_len(x.valid[task.image].1);
                // SAFETY: tasks cover disjoint (image, row band) regions of `out`.
                unsafe { self.run_task(x, task, out_cols, out_geometry, shared, &mut scratch) };
            }
        };
        let threads = threads.clamp(1, tasks.len().max(1));
        if threads == 1 {
            worker();
        } else {
            std::thread::scope(|s| {
                for _ in 1..threads {
                    s.spawn(worker);
                }
                worker();
            });
        }
        out
    }

    /// One task: output rows `first_row..end_row` of one image, all channels.
    ///
    /// # Safety
    /// `out` must point at a buffer of `n * channels * rows * cols` floats and no other
    /// thread may write the task's region at the same time.
    unsafe fn run_task(
        &self,
        x: &FeatureBatch,
        task: Task,
        out_cols: usize,
        (channels, rows, cols): (usize, usize, usize),
        out: SharedOut,
        scratch: &mut Scratch,
    ) {
        let band_rows = task.end_row - task.first_row;
        let n = band_rows * out_cols;
        let image_base = task.image * channels * rows * cols;
        if self.out_channels == 1 && self.stride == 1 {
            let acc = scratch.tmp(n);
            acc.fill(0.0);
            self.direct_single(x, task, out_cols, acc);
            let dst = out.0.add(image_base + task.first_row * cols);
            for rr in 0..band_rows {
                for c in 0..out_cols {
                    *dst.add(rr * cols + c) = self.activate(acc[rr * out_cols + c] + self.bias[0]);
                }
            }
            return;
        }
        let k = self.in_channels * self.kernel * self.kernel;
        let (col, tmp, phases) = scratch.buffers(k * n, self.out_channels * n);
        self.im2col(x, task, out_cols, col, phases);
        gemm::gemm(
            self.out_channels,
            n,
            k,
            tmp.as_mut_ptr(),
            1,
            n as isize,
            false,
            self.weight.as_ptr(),
            1,
            k as isize,
            col.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
        for o in 0..self.out_channels {
            let bias = self.bias[o];
            let src = &tmp[o * n..(o + 1) * n];
            let plane = out
                .0
                .add(image_base + o * rows * cols + task.first_row * cols);
            for rr in 0..band_rows {
                let dst = std::slice::from_raw_parts_mut(plane.add(rr * cols), out_cols);
                for (d, &s) in dst.iter_mut().zip(&src[rr * out_cols..(rr + 1) * out_cols]) {
                    *d = self.activate(s + bias);
                }
            }
        }
    }

    #[inline(always)]
    fn activate(&self, v: f32) -> f32 {
        if self.relu {
            v.max(0.0)
        } else {
            v
        }
    }

    /// `col[(c*k + ky)*k + kx][rr*out_cols + ox] = input(c, y*s + ky - p, ox*s + kx - p)`,
    /// zero outside the image's valid corner. For stride `s > 1` each input row is
    /// first split into its `s` column phases, so every kernel column becomes one
    /// contiguous copy instead of a strided gather.
    fn im2col(
        &self,
        x: &FeatureBatch,
        task: Task,
        out_cols: usize,
        col: &mut [f32],
        phases: &mut Vec<f32>,
    ) {
        let (in_rows, in_cols) = x.valid[task.image];
        let band_rows = task.end_row - task.first_row;
        let n = band_rows * out_cols;
        let (k, s, p) = (self.kernel, self.stride, self.padding as isize);
        // Per kernel column: the output columns whose input lies inside the image, and
        // where output column `first` reads in the phase-split row.
        let phase_start = |phi: usize| {
            (0..phi)
                .map(|f| in_cols.saturating_sub(f).div_ceil(s))
                .sum::<usize>()
        };
        let spans: Vec<(usize, usize, usize)> = (0..k)
            .map(|kx| {
                let q = kx as isize - p;
                let first = ((-q).max(0) as usize).div_ceil(s);
                let end = if in_cols as isize - q <= 0 {
                    0
                } else {
                    ((in_cols as isize - q - 1) as usize / s + 1).min(out_cols)
                };
                let phi = q.rem_euclid(s as isize);
                let offset = (q - phi) / s as isize;
                let src = if first < end {
                    phase_start(phi as usize) + (first as isize + offset) as usize
                } else {
                    0
                };
                (first, end.max(first), src)
            })
            .collect();
        if s > 1 {
            phases.resize(in_cols, 0.0);
        }
        for c in 0..self.in_channels {
            let plane = x.plane(task.image, c);
            for ky in 0..k {
                let block = ((c * k + ky) * k) * n;
                for rr in 0..band_rows {
                    let iy = ((task.first_row + rr) * s + ky) as isize - p;
                    let at = |kx: usize| block + kx * n + rr * out_cols;
                    if iy < 0 || iy >= in_rows as isize {
                        for kx in 0..k {
                            col[at(kx)..at(kx) + out_cols].fill(0.0);
                        }
                        continue;
                    }
                    let row = &plane[iy as usize * x.cols..iy as usize * x.cols + in_cols];
                    let split: &[f32] = if s == 1 {
                        row
                    } else {
                        let mut o = 0;
                        for phi in 0..s {
                            for &v in row[phi..].iter().step_by(s) {
                                phases[o] = v;
                                o += 1;
                            }
                        }
                        phases
                    };
                    for (kx, &(first, end, src)) in spans.iter().enumerate() {
                        let dst = &mut col[at(kx)..at(kx) + out_cols];
                        dst[..first].fill(0.0);
                        dst[end..].fill(0.0);
                        dst[first..end].copy_from_slice(&split[src..src + end - first]);
                    }
                }
            }
        }
    }

    /// Stride-1 single-filter conv accumulated row by row (no im2col).
    fn direct_single(&self, x: &FeatureBatch, task: Task, out_cols: usize, acc: &mut [f32]) {
        let (in_rows, in_cols) = x.valid[task.image];
        let (k, p) = (self.kernel, self.padding as isize);
        for c in 0..self.in_channels {
            let plane = x.plane(task.image, c);
            for ky in 0..k {
                for rr in 0..task.end_row - task.first_row {
                    let iy = (task.first_row + rr + ky) as isize - p;
                    if iy < 0 || iy >= in_rows as isize {
                        continue;
                    }
                    let src = &plane[iy as usize * x.cols..iy as usize * x.cols + in_cols];
                    let dst = &mut acc[rr * out_cols..(rr + 1) * out_cols];
                    for kx in 0..k {
                        let w = self.weight[(c * k + ky) * k + kx];
                        let shift = kx as isize - p;
                        let first_x = (-shift).max(0) as usize;
                        let end_x = ((in_cols as isize - shift).max(0) as usize).min(out_cols);
                        if first_x >= end_x {
                            continue;
                        }
                        let from = (first_x as isize + shift) as usize;
                        let src = &src[from..from + end_x - first_x];
                        for (d, &v) in dst[first_x..end_x].iter_mut().zip(src) {
                            *d += w * v;
                        }
                    }
                }
            }
        }
    }
}

/// Per-thread buffers reused across tasks.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    tmp: Vec<f32>,
    phases: Vec<f32>,
}

impl Scratch {
    fn tmp(&mut self, len: usize) -> &mut [f32] {
        if self.tmp.len() < len {
            self.tmp.resize(len, 0.0);
        }
        &mut self.tmp[..len]
    }

    fn buffers(
        &mut self,
        col_len: usize,
        tmp_len: usize,
    ) -> (&mut [f32], &mut [f32], &mut Vec<f32>) {
        if self.col.len() < col_len {
            self.col.resize(col_len, 0.0);
        }
        if self.tmp.len() < tmp_len {
            self.tmp.resize(tmp_len, 0.0);
        }
        (
            &mut self.col[..col_len],
            &mut self.tmp[..tmp_len],
            &mut self.phases,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference convolution of one image.
    fn reference(conv: &NativeConv, input: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let (orow, ocol) = (conv.out_len(rows), conv.out_len(cols));
        let k = conv.kernel;
        let mut out = vec![0.0; conv.out_channels * orow * ocol];
        for o in 0..conv.out_channels {
            for y in 0..orow {
                for x in 0..ocol {
                    let mut acc = 0.0f64;
                    for c in 0..conv.in_channels {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (y * conv.stride + ky) as isize - conv.padding as isize;
                                let ix = (x * conv.stride + kx) as isize - conv.padding as isize;
                                if iy < 0 || ix < 0 || iy >= rows as isize || ix >= cols as isize {
                                    continue;
                                }
                                let v = input[(c * rows + iy as usize) * cols + ix as usize];
                                let w = conv.weight
                                    [o * conv.in_channels * k * k + (c * k + ky) * k + kx];
                                acc += f64::from(v) * f64::from(w);
                            }
                        }
                    }
                    let v = acc as f32 + conv.bias[o];
                    out[(o * orow + y) * ocol + x] = if conv.relu { v.max(0.0) } else { v };
                }
            }
        }
        out
    }

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn conv(out_c: usize, in_c: usize, kernel: usize, stride: usize, padding: usize) -> NativeConv {
        NativeConv {
            out_channels: out_c,
            in_channels: in_c,
            kernel,
            stride,
            padding,
            weight: pseudo_random(out_c * in_c * kernel * kernel, 7),
            bias: pseudo_random(out_c, 3),
            relu: true,
        }
    }

    #[test]
    fn batched_convolutions_match_the_reference_on_every_image() {
        let sizes = [(23, 17), (9, 31), (4, 4), (30, 30)];
        for layer in [
            conv(5, 3, 5, 2, 0),
            conv(4, 3, 5, 1, 2),
            conv(1, 3, 9, 1, 4),
            conv(6, 3, 3, 1, 1),
            conv(3, 3, 3, 2, 1),
            conv(2, 3, 4, 3, 2),
        ] {
            let (rows, cols) = (30, 31);
            let mut batch = FeatureBatch {
                data: vec![0.0; sizes.len() * 3 * rows * cols],
                channels: 3,
                rows,
                cols,
                valid: sizes.to_vec(),
            };
            let inputs: Vec<Vec<f32>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &(r, c))| pseudo_random(3 * r * c, i as u32 + 1))
                .collect();
            for (i, (&(r, c), input)) in sizes.iter().zip(&inputs).enumerate() {
                for ch in 0..3 {
                    for y in 0..r {
                        let start = ((i * 3 + ch) * rows + y) * cols;
                        batch.data[start..start + c]
                            .copy_from_slice(&input[(ch * r + y) * c..(ch * r + y + 1) * c]);
                    }
                }
            }
            for threads in [1, 3] {
                let out = layer.forward(&batch, threads);
                for (i, (&(r, c), input)) in sizes.iter().zip(&inputs).enumerate() {
                    let want = reference(&layer, input, r, c);
                    let (orow, ocol) = out.valid[i];
                    assert_eq!(
                        orow * ocol * layer.out_channels,
                        want.len(),
                        "image {i} size"
                    );
                    for o in 0..layer.out_channels {
                        let plane = out.plane(i, o);
                        for y in 0..out.rows {
                            for x in 0..out.cols {
                                let got = plane[y * out.cols + x];
                                if y < orow && x < ocol {
                                    let w = want[(o * orow + y) * ocol + x];
                                    assert!(
                                        (got - w).abs() < 1e-4,
                                        "image {i} ({o},{y},{x}): {got} vs {w}"
                                    );
                                } else {
                                    assert_eq!(got, 0.0, "image {i} outside its valid corner");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
