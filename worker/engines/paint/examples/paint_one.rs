//! Paints one image in one style: `cargo run -p reverie-paint --example paint_one --release -- STYLE IN OUT [SEED]`.
//! Handy for looking at a single style at full size and for profiling one renderer.

use reverie_paint::{paint, StyleSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [style, input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: paint_one STYLE IN OUT [SEED]".into());
    };
    let seed = match rest.first() {
        Some(s) => s.parse::<u64>().map_err(|e| format!("seed `{s}`: {e}"))?,
        None => 0,
    };
    let style = StyleSpec::from_name(style)?;
    let image = image::open(input).map_err(|e| format!("cannot open {input}: {e}"))?;
    let start = std::time::Instant::now();
    let painted = paint(&image, &style, seed)?;
    eprintln!("{} in {:.3} s", style.name, start.elapsed().as_secs_f64());
    painted
        .save(output)
        .map_err(|e| format!("cannot write {output}: {e}"))?;
    Ok(())
}
