//! Functions compiled into the binary. The host's build script builds them
//! from `functions/` for wasm32-wasip2; embedding them means a bare
//! `sluice` binary needs no files beside it.

/// A built-in transform: callable by every tenant under its name.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name callers use.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// The component bytes.
    pub component: &'static [u8],
}

/// The built-in transforms, by name.
pub const TRANSFORMS: &[Builtin] = &[
    Builtin {
        name: "resize",
        summary: "resize, crop and convert JPEG, PNG, GIF, WebP, BMP and TIFF images",
        component: include_bytes!(concat!(env!("SLUICE_GUEST_DIR"), "/sluice_resize_component.wasm")),
    },
    Builtin {
        name: "grayscale",
        summary: "example tenant function: turn a PNG or JPEG grey",
        component: include_bytes!(concat!(env!("SLUICE_GUEST_DIR"), "/sluice_example_grayscale.wasm")),
    },
];

/// The usage aggregator component (not callable by tenants).
pub const METER: &[u8] = include_bytes!(concat!(env!("SLUICE_GUEST_DIR"), "/sluice_meter.wasm"));

/// The built-in transform called `name`, if any.
pub fn transform(name: &str) -> Option<&'static Builtin> {
    TRANSFORMS.iter().find(|builtin| builtin.name == name)
}
