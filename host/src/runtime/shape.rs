//! How many core instances, memories and tables one instantiation of a
//! component creates, counted from its binary before anything is compiled.
//!
//! The per-call memory limit bounds the bytes a call's memories hold, but
//! every core instance, memory and table also costs the host a pool slot,
//! address space and bookkeeping before the first byte is touched. A deploy
//! is refused when the count is over the caps in [`RuntimeConfig`], so such
//! a component never reaches a worker (the store's limiter enforces the same
//! caps again at instantiation, with or without the pooling allocator).
//!
//! The count follows what wasmtime does when it flattens a component: every
//! `instantiate` of a core module is one core instance holding the memories
//! and tables that module defines (imported ones belong to someone else),
//! and every `instantiate` of a nested component adds that component's own
//! count, however deep. Items the count cannot see through (a module or
//! component taken from an import or from another instance's exports) add
//! nothing here; the store's limiter still counts them when they are made.
//!
//! [`RuntimeConfig`]: super::RuntimeConfig

use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind, ComponentTypeRef, Instance,
    Parser, Payload,
};

/// What one instantiation of a component (or core module) creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Core module instances.
    pub(crate) core_instances: u64,
    /// Linear memories defined by those instances.
    pub(crate) memories: u64,
    /// Tables defined by those instances.
    pub(crate) tables: u64,
}

impl Shape {
    fn add(&mut self, other: Shape) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
    }
}

/// One component or core module being read: its own running count and the
/// index spaces an instantiation can refer to. `None` in an index space is
/// an item whose contents are unknown here (imported or aliased from an
/// instance); instantiating it adds nothing.
#[derive(Default)]
struct Scope {
    total: Shape,
    modules: Vec<Option<Shape>>,
    components: Vec<Option<Shape>>,
}

/// Counts what instantiating the component in `bytes` creates.
///
/// Fails only when the bytes do not parse; whether they validate is left
/// to the compiler, which says more precisely what is wrong.
pub(crate) fn count(bytes: &[u8]) -> Result<Shape, wasmparser::BinaryReaderError> {
    // The outermost scope is a placeholder whose only entry is the
    // component itself once it ends.
    let mut stack: Vec<(Scope, bool)> = vec![(Scope::default(), true)];
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } => stack.push((Scope::default(), false)),
            Payload::ComponentSection { .. } => stack.push((Scope::default(), true)),
            Payload::Version { .. } if stack.len() == 1 => stack.push((Scope::default(), true)),
            Payload::End(_) => {
                // Never pops the placeholder, so `current` always has a scope.
                if stack.len() < 2 {
                    break;
                }
                let Some((ended, is_component)) = stack.pop() else { break };
                let Some((parent, _)) = stack.last_mut() else { break };
                if is_component {
                    parent.components.push(Some(ended.total));
                } else {
                    parent.modules.push(Some(ended.total));
                }
            }
            Payload::MemorySection(reader) => {
                if let Some((scope, false)) = stack.last_mut() {
                    scope.total.memories = scope.total.memories.saturating_add(u64::from(reader.count()));
                }
            }
            Payload::TableSection(reader) => {
                if let Some((scope, false)) = stack.last_mut() {
                    scope.total.tables = scope.total.tables.saturating_add(u64::from(reader.count()));
                }
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    if let Instance::Instantiate { module_index, .. } = instance? {
                        let scope = current(&mut stack);
                        let module = lookup(&scope.modules, module_index).unwrap_or_default();
                        scope.total.add(Shape { core_instances: 1, ..module });
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                for instance in reader {
                    if let ComponentInstance::Instantiate { component_index, .. } = instance? {
                        let scope = current(&mut stack);
                        let component = lookup(&scope.components, component_index).unwrap_or_default();
                        scope.total.add(component);
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    match import?.ty {
                        ComponentTypeRef::Module(_) => current(&mut stack).modules.push(None),
                        ComponentTypeRef::Component(_) => current(&mut stack).components.push(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                // An export is also a new index for the item it exports.
                for export in reader {
                    let export = export?;
                    let scope = current(&mut stack);
                    match export.kind {
                        ComponentExternalKind::Module => scope.modules.push(lookup(&scope.modules, export.index)),
                        ComponentExternalKind::Component => {
                            scope.components.push(lookup(&scope.components, export.index));
                        }
                        _ => {}
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    match alias? {
                        ComponentAlias::InstanceExport { kind: ComponentExternalKind::Module, .. } => {
                            current(&mut stack).modules.push(None);
                        }
                        ComponentAlias::InstanceExport { kind: ComponentExternalKind::Component, .. } => {
                            current(&mut stack).components.push(None);
                        }
                        ComponentAlias::Outer { kind, count, index } => {
                            let outer = usize::try_from(count)
                                .ok()
                                .and_then(|count| stack.len().checked_sub(count + 1))
                                .map(|at| &stack[at].0);
                            let aliased = match kind {
                                ComponentOuterAliasKind::CoreModule => {
                                    Some((outer.and_then(|scope| lookup(&scope.modules, index)), false))
                                }
                                ComponentOuterAliasKind::Component => {
                                    Some((outer.and_then(|scope| lookup(&scope.components, index)), true))
                                }
                                ComponentOuterAliasKind::CoreType | ComponentOuterAliasKind::Type => None,
                            };
                            match aliased {
                                Some((shape, false)) => current(&mut stack).modules.push(shape),
                                Some((shape, true)) => current(&mut stack).components.push(shape),
                                None => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let root = stack.first().and_then(|(scope, _)| scope.components.first().copied().flatten());
    Ok(root.unwrap_or_default())
}

fn current(stack: &mut [(Scope, bool)]) -> &mut Scope {
    // The placeholder is never popped while payloads arrive, so the stack
    // is never empty here.
    &mut stack.last_mut().expect("the scope stack holds the placeholder").0
}

fn lookup(space: &[Option<Shape>], index: u32) -> Option<Shape> {
    usize::try_from(index).ok().and_then(|index| space.get(index).copied().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture the build script converted from `functions/fixtures/wat/`.
    fn shape_of(name: &str) -> Shape {
        let path = std::path::Path::new(env!("SLUICE_GUEST_DIR")).join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        count(&bytes).expect("parses")
    }

    #[test]
    fn counts_each_instantiation_with_its_memories_and_tables() {
        assert_eq!(shape_of("shape-instances"), Shape { core_instances: 4, memories: 6, tables: 3 });
    }

    #[test]
    fn nested_components_count_once_per_instantiation_and_outer_aliases_resolve() {
        // 3 × 2 from the nested component, 1 through the outer alias, none
        // from definitions never instantiated.
        assert_eq!(shape_of("shape-nested"), Shape { core_instances: 7, memories: 7, tables: 0 });
    }

    #[test]
    fn the_many_memories_fixtures_are_counted() {
        assert_eq!(shape_of("many-memories"), Shape { core_instances: 4, memories: 4, tables: 0 });
        assert_eq!(shape_of("too-many-memories"), Shape { core_instances: 9, memories: 9, tables: 0 });
    }

    #[test]
    fn an_empty_component_creates_nothing() {
        assert_eq!(count(b"\0asm\x0d\0\x01\0").expect("parses"), Shape::default());
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(count(b"\0asm\x0d\0\x01\0\xff\xff").is_err());
    }
}
