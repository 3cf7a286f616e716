//! The explore view's rules and screen: asking for predictions, the list, the confusion matrix.

use super::*;

#[test]
fn explore_asks_for_predictions_once_filters_mistakes_and_ignores_stale_results() {
    let mut app = app_with_data();
    assert!(key(&mut app, KeyCode::Char('2')).is_empty(), "no predictions outside the explore view");
    let effects = key(&mut app, KeyCode::Char('3'));
    let generation = match &effects[..] {
        [Effect::PredictAll { generation, split, .. }] => {
            assert_eq!(split.test.len(), 20);
            *generation
        }
        other => panic!("{other:?}"),
    };
    assert!(key(&mut app, KeyCode::Down).is_empty(), "asked only once");
    assert_shows(&screen(&app, 120, 40), &["Predicting 20 test images"]);
    // Labels are i % 10; the fake model gets 3, 13 and 17 wrong.
    let mut classes: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    (classes[3], classes[13], classes[17]) = (5, 1, 2);
    let predictions = Predictions { classes, confidence: vec![0.75; 20] };
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation: generation + 7, result: Ok(predictions.clone()) }));
    assert!(app.explore.predictions.is_none(), "a stale result is dropped");
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation, result: Ok(predictions) }));
    assert_eq!(app.explore.indices(&app.shared).len(), 20);
    let shown = screen(&app, 120, 40);
    assert_shows(
        &shown,
        &[
            "Test images: 20",
            "#0",
            "true 0 pred 0  75.0%",
            "Image #0",
            "Confusion matrix",
            "accuracy 0.8500: 3 of 20 wrong",
            "True label: 0",
        ],
    );
    key(&mut app, KeyCode::Char('m'));
    assert_eq!(app.explore.indices(&app.shared), vec![3, 13, 17]);
    key(&mut app, KeyCode::End);
    assert_eq!(app.explore.selected, 2);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.explore.selected, 2, "stays on the last");
    assert_shows(&screen(&app, 120, 40), &["Misclassified: 3 of 20", "Image #17", "Predicted:  2 (75.0%)", "WRONG"]);
    // A click on a list row selects it.
    let list = layout(app.screen).explore.list;
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), (list.x + 2, list.y + 1));
    assert_eq!(app.explore.selected, 0);
    // A new model makes the predictions stale: asked again.
    let effects = send(&mut app, Msg::ModelLoaded(Ok(models::shipped().unwrap())));
    assert!(matches!(&effects[..], [Effect::PredictAll { generation: g, .. }] if *g > generation), "{effects:?}");
}

/// The full test set's 10,000 images (labels i % 10) with every 97th of classes 2-9 wrong: its
/// confusion matrix has 1000 on the diagonal of rows 0 and 1.
fn full_test_set() -> (App, [[u32; 10]; 10]) {
    let wrong = |i: usize| i.is_multiple_of(97) && i % 10 >= 2;
    let classes: Vec<u8> = (0..10_000).map(|i| ((i + wrong(i) as usize) % 10) as u8).collect();
    let mut expected = [[0u32; 10]; 10];
    for (i, &c) in classes.iter().enumerate() {
        expected[i % 10][c as usize] += 1;
    }
    assert_eq!((expected[0][0], expected[1][1]), (1000, 1000));
    (exploring(10_000, classes), expected)
}

/// Issue 17 #3: on 10,000 test images every count stands apart from its neighbours.
#[test]
fn the_confusion_matrix_holds_four_digit_counts_apart() {
    let (app, expected) = full_test_set();
    let rows = matrix_rows(&screen(&app, 120, 40));
    assert_eq!(rows, expected.map(|r| r.to_vec()).to_vec(), "\n{}", screen(&app, 120, 40));
}

/// Issue 17 #4: at 80x24 the explore view shows the list, the selected image's verdict, the
/// confusion matrix's counts and every key of the legend.
#[test]
fn at_80x24_explore_shows_the_list_the_verdict_the_counts_and_the_keys() {
    let (mut app, expected) = full_test_set();
    key(&mut app, KeyCode::Down);
    let shown = screen(&app, 80, 24);
    assert_eq!(matrix_rows(&shown), expected.map(|r| r.to_vec()).to_vec(), "\n{shown}");
    assert_shows(&shown, &["Test images: 10000", "#1 ", "#2 ", "accuracy 0.9918", "Predicted:  1 (75.0%)"]);
    assert_legend(&shown, views::explore::KEYS);
    assert_legend(&shown, render::GLOBAL_KEYS);
}

/// Issue 17 #8: each finished epoch of a run brings a new model; until its predictions are in,
/// explore shows the old ones (not a blank "Predicting"), and then the same image stays selected.
#[test]
fn a_new_model_keeps_the_old_predictions_and_the_selection_until_the_new_ones_are_in() {
    let wrong_at =
        |wrong: &[usize]| -> Vec<u8> { (0..20).map(|i| ((i + wrong.contains(&i) as usize) % 10) as u8).collect() };
    let mut app = exploring(20, wrong_at(&[3, 13, 17]));
    app.view = View::Train;
    start_run(&mut app);
    app.view = View::Explore;
    for _ in 0..5 {
        key(&mut app, KeyCode::Down);
    }
    let new_model = |app: &mut App, epoch| {
        let params = models::shipped().unwrap().params.to_vec();
        match &send(app, Msg::Worker(WorkerMsg::Snapshot { epoch, params }))[..] {
            [Effect::PredictAll { generation, .. }] => *generation,
            other => panic!("{other:?}"),
        }
    };
    let generation = new_model(&mut app, 1);
    let shown = screen(&app, 120, 40);
    assert_shows(&shown, &["Test images: 20", "Image #5", "accuracy 0.8500", "updating"]);
    assert!(!shown.contains("Predicting"), "{shown}");
    let predictions = Predictions { classes: wrong_at(&[7, 13, 17]), confidence: vec![0.75; 20] };
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation, result: Ok(predictions) }));
    assert_eq!(app.explore.selected, 5);
    assert_shows(&screen(&app, 120, 40), &["Image #5", "accuracy 0.8500"]);

    // Among the misclassified: the selected image stays selected while it is still in the list,
    // else the next one is.
    key(&mut app, KeyCode::Char('m'));
    key(&mut app, KeyCode::End);
    key(&mut app, KeyCode::Up);
    assert_shows(&screen(&app, 120, 40), &["Misclassified: 3 of 20", "Image #13"]);
    let generation = new_model(&mut app, 2);
    let predictions = Predictions { classes: wrong_at(&[3, 7, 9, 13, 17]), confidence: vec![0.75; 20] };
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation, result: Ok(predictions) }));
    assert_shows(&screen(&app, 120, 40), &["Misclassified: 5 of 20", "Image #13"]);
    let generation = new_model(&mut app, 3);
    let predictions = Predictions { classes: wrong_at(&[3, 17]), confidence: vec![0.75; 20] };
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation, result: Ok(predictions) }));
    assert_shows(&screen(&app, 120, 40), &["Misclassified: 2 of 20", "Image #17"]);

    // Other data: the old predictions are not theirs.
    app.train.phase = Phase::Completed;
    app.train.settings.limit = 30;
    app.view = View::Train;
    key(&mut app, KeyCode::Char('s'));
    let args = app.train.settings.data_args();
    send(&mut app, Msg::Data(DataMsg::Loaded { split: tiny_split(30), source: "other".into(), args }));
    app.view = View::Explore;
    assert_shows(&screen(&app, 120, 40), &["Predicting 30 test images"]);
}
