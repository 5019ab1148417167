//! Where the topology puts its nodes: around the backplane on an ellipse that fills the drawing
//! area, spaced by equal distance along the ellipse (so neighbours are as far apart as each other
//! from 1 to 8 nodes, and none sits close to the backplane), shrunk until nothing overlaps.
//! Pure geometry, used by `topology` only.

use std::f32::consts::TAU;

use egui::{Vec2, vec2};

/// Outer radius of a node's drawing (box and client dots) at scale 1, in points.
pub const NODE_REACH: f32 = 92.0;

/// Radius of the backplane's circle at scale 1.
pub const BUS_RADIUS: f32 = 38.0;

/// A node box's size at scale 1.
pub const BOX: Vec2 = vec2(130.0, 56.0);

/// Node centres (offsets from the backplane's centre) and the drawing scale for `n` nodes in an
/// area of `size`, so that no node (box and client dots) leaves the area, overlaps another or
/// covers the backplane. Starts at `max_scale` and shrinks until it fits (down to a third).
pub fn layout(size: Vec2, n: usize, max_scale: f32) -> (Vec<Vec2>, f32) {
    let mut scale = max_scale;
    loop {
        let offsets = offsets(size, n, scale);
        if fits(&offsets, size, scale) || scale <= max_scale / 3.0 {
            return (offsets, scale);
        }
        scale *= 0.92;
    }
}

/// A node box's scale: it shrinks with the picture, but not below what its text needs.
pub fn box_scale(scale: f32) -> f32 {
    scale.max(0.8)
}

/// How far a node's drawing (box and client dots) reaches from its centre.
pub fn reach(scale: f32) -> f32 {
    (NODE_REACH * scale).max(72.0 * box_scale(scale))
}

/// Points on the ellipse of radii `rx`, `ry` at equal distances along it, symmetric about the
/// vertical axis: the first at the top for an odd count, the first two either side of it for
/// an even one; going clockwise on screen.
fn along_ellipse(rx: f32, ry: f32, n: usize) -> Vec<Vec2> {
    const STEPS: usize = 1440;
    let top = -TAU / 4.0;
    let point = |a: f32| vec2(a.cos() * rx, a.sin() * ry);
    // Cumulative length from the top, sampled.
    let mut lengths = Vec::with_capacity(STEPS + 1);
    let mut total = 0.0;
    let mut previous = point(top);
    lengths.push(0.0);
    for i in 1..=STEPS {
        let p = point(top + TAU * i as f32 / STEPS as f32);
        total += (p - previous).length();
        lengths.push(total);
        previous = p;
    }
    let shift = if n.is_multiple_of(2) { 0.5 } else { 0.0 };
    (0..n)
        .map(|k| {
            let wanted = total * (k as f32 + shift) / n as f32;
            let i = lengths.partition_point(|l| *l < wanted).min(STEPS);
            point(top + TAU * i as f32 / STEPS as f32)
        })
        .collect()
}

fn offsets(size: Vec2, n: usize, scale: f32) -> Vec<Vec2> {
    let reach = reach(scale);
    let rx = (size.x / 2.0 - reach - 6.0).min(size.x * 0.42).max(0.0);
    let ry = (size.y / 2.0 - reach - 6.0).min(size.y * 0.42).max(0.0);
    // One or two: left (and right), the widest use of a wide area. Three or more: evenly along
    // the ellipse, symmetric about the vertical axis (three: top, lower right, lower left).
    if n <= 2 {
        return (0..n).map(|i| vec2(if i == 0 { -rx } else { rx }, 0.0)).collect();
    }
    along_ellipse(rx, ry, n)
}

/// Whether the nodes stay inside the area, clear of the backplane (and its label) and of each
/// other.
pub fn fits(offsets: &[Vec2], size: Vec2, scale: f32) -> bool {
    let reach = reach(scale);
    let inside = offsets
        .iter()
        .all(|o| o.x.abs() + reach <= size.x / 2.0 + 0.5 && o.y.abs() + reach <= size.y / 2.0 + 0.5);
    let half = BOX / 2.0 * box_scale(scale);
    let clear_of_bus = offsets.iter().all(|o| {
        (o.x.abs() - half.x).max(0.0).hypot((o.y.abs() - half.y).max(0.0)) >= (BUS_RADIUS + 30.0) * scale
    });
    let apart = offsets.iter().enumerate().all(|(i, a)| {
        offsets[i + 1..]
            .iter()
            .all(|b| (*a - *b).length() >= 2.0 * reach * 0.75)
    });
    inside && clear_of_bus && apart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(size: Vec2, n: usize, max_scale: f32) -> f32 {
        let (offsets, scale) = layout(size, n, max_scale);
        assert_eq!(offsets.len(), n);
        assert!(
            fits(&offsets, size, scale),
            "{n} nodes in {size:?} at {scale}: {offsets:?}"
        );
        scale
    }

    #[test]
    fn one_to_eight_nodes_fit_without_overlap() {
        // The presenter's drawing area at 1024 × 768 (beside the latest messages), at 1280 × 720,
        // and the normal tab.
        for size in [
            vec2(620.0, 500.0),
            vec2(780.0, 470.0),
            vec2(1060.0, 420.0),
            vec2(1280.0, 800.0),
        ] {
            for n in 1..=8 {
                check(size, n, 1.4);
            }
        }
        // Plenty of room: the full scale is kept.
        assert_eq!(check(vec2(1280.0, 800.0), 3, 1.0), 1.0);
    }

    #[test]
    fn neighbours_are_evenly_spaced() {
        for n in 3..=8 {
            let (offsets, scale) = layout(vec2(780.0, 470.0), n, 1.4);
            let gaps: Vec<f32> = (0..n)
                .map(|i| (offsets[i] - offsets[(i + 1) % n]).length())
                .collect();
            let (min, max) = gaps
                .iter()
                .fold((f32::MAX, 0.0f32), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
            // Equal distances along the ellipse: on a wide one, chords differ somewhat.
            assert!(max / min < 1.7, "{n} nodes: gaps {gaps:?}");
            // No node crammed against the backplane (the old layout put one 25 px from it): a
            // clear gap between each box and the backplane's circle.
            let half = BOX / 2.0 * box_scale(scale);
            for o in &offsets {
                let to_box = (o.x.abs() - half.x).max(0.0).hypot((o.y.abs() - half.y).max(0.0));
                assert!(to_box - BUS_RADIUS * scale >= 30.0, "{n} nodes: {o:?} at {scale}");
            }
        }
    }
}
