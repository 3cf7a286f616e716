//! training.svg: loss and accuracy per epoch, training and validation, drawn with plotters'
//! SVG backend, because a pod has no TUI. Fixed colours: blue for training, orange for
//! validation.

use plotters::prelude::*;

use crate::report::EpochRecord;

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(255, 127, 14);

pub fn training_svg(records: &[EpochRecord]) -> String {
    let mut svg = String::new();
    // Drawing into a String cannot fail for I/O reasons; a plotting error leaves a blank chart.
    let _ = draw(&mut svg, records);
    svg
}

type Series = Vec<(f64, f64)>;

fn draw<'a>(svg: &'a mut String, records: &[EpochRecord]) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let root = SVGBackend::with_string(svg, (960, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(480);
    let epochs = records.len().max(1) as f64;
    let pick = |f: &dyn Fn(&EpochRecord) -> Option<f32>| -> Series {
        records.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v as f64))).collect()
    };
    let panels: [(&str, Series, Series); 2] = [
        ("loss", pick(&|r| Some(r.train.loss)), pick(&|r| r.test.map(|t| t.loss))),
        ("accuracy", pick(&|r| Some(r.train.accuracy)), pick(&|r| r.test.map(|t| t.accuracy))),
    ];
    for (area, (name, train, validation)) in [left, right].iter().zip(panels) {
        let values = train.iter().chain(&validation).map(|p| p.1);
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1.0..epochs.max(2.0), (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(name)
            .x_labels(records.len().clamp(2, 12))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(train, TRAIN.stroke_width(2)))?
            .label("train")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], TRAIN));
        chart
            .draw_series(LineSeries::new(validation, VALIDATION.stroke_width(2)))?
            .label("validation")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], VALIDATION));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_core::model::Metrics;

    #[test]
    fn draws_both_panels_with_both_series() {
        let records: Vec<EpochRecord> = (1..=4)
            .map(|epoch| EpochRecord {
                epoch,
                train: Metrics { loss: 1.0 / epoch as f32, accuracy: 0.9 + epoch as f32 / 100.0, samples: 10 },
                test: Some(Metrics { loss: 0.8 / epoch as f32, accuracy: 0.92 + epoch as f32 / 100.0, samples: 5 }),
                seconds: 1.0,
            })
            .collect();
        let svg = training_svg(&records);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for label in ["loss", "accuracy", "epoch", "train", "validation"] {
            assert!(svg.contains(&format!(">\n{label}\n<")), "label {label} missing");
        }
        assert!(svg.matches("<polyline").count() >= 4, "two series in each of two panels");
    }
}
