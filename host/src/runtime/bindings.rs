//! Host-side bindings for the two worlds the runtime calls, generated once
//! from the repository's `wit/` folder (the single source of truth).

/// The tenant contract (`sluice:function/transform`).
pub mod transform {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        exports: { default: async },
    });
}

/// The usage aggregator (`sluice:meter/meter`).
pub mod meter {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/meter",
        world: "meter",
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}
