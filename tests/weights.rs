//! Weights as the application loads them: seeded, or from files.

mod common;

use burn::backend::{Flex, NdArray};
use lenet_jacobian::input::Batch;
use lenet_jacobian::model;

use common::relative_error;

#[test]
fn seeded_weights_are_the_same_on_every_backend() {
    // Flex's own generator is not reproducible; the application draws on ndarray and moves
    // the weights. Same logits on ndarray and flex for a seed.
    let device = Default::default();
    let x = Batch::random(2, 3);
    let a = model::load::<NdArray>(None, 11, &device)
        .unwrap()
        .forward(x.to_tensor(&device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = model::load::<Flex>(None, 11, &Default::default())
        .unwrap()
        .forward(x.to_tensor(&Default::default()))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(relative_error(&b, &a) < 1e-5);
    let c = model::load::<NdArray>(None, 12, &device)
        .unwrap()
        .forward(x.to_tensor(&device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(relative_error(&c, &a) > 1e-2, "another seed, other weights");
}
