//! Just enough of an ELF header to decide whether a binary can run alone in an
//! image with nothing else in it: its machine (the image's architecture) and
//! whether it asks for a program interpreter (`PT_INTERP`, the dynamic loader
//! such as `/lib64/ld-linux-x86-64.so.2`). A static-pie binary, which is what
//! `-C target-feature=+crt-static` gives on the gnu targets, has a dynamic
//! section but no interpreter, and runs in an empty image.

/// What the image needs to know about the binary it packs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// The OCI `architecture` (GOARCH spelling): amd64, arm64, …
    pub architecture: &'static str,
    /// The interpreter it asks for, if it is dynamically linked.
    pub interpreter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF executable")]
    NotElf,
    #[error("truncated or malformed ELF header")]
    Malformed,
    #[error("ELF machine {0:#x} has no OCI architecture berth knows")]
    UnknownMachine(u16),
}

const PT_INTERP: u32 = 3;

/// Reads the machine and the interpreter of an ELF file's bytes.
pub fn inspect(bytes: &[u8]) -> Result<Binary, ElfError> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::Malformed),
    };
    let little = match bytes[5] {
        1 => true,
        2 => false,
        _ => return Err(ElfError::Malformed),
    };
    let r = Reader { bytes, little };
    let machine = r.u16(18)?;
    let (phoff, phentsize, phnum) = if wide {
        (r.u64(32)?, r.u16(54)?, r.u16(56)?)
    } else {
        (u64::from(r.u32(28)?), r.u16(42)?, r.u16(44)?)
    };
    let mut interpreter = None;
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|at| usize::try_from(at).ok())
            .ok_or(ElfError::Malformed)?;
        if r.u32(at)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide {
            (r.u64(at + 8)?, r.u64(at + 32)?)
        } else {
            (u64::from(r.u32(at + 4)?), u64::from(r.u32(at + 16)?))
        };
        let range = offset
            .checked_add(size)
            .and_then(|end| Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?))
            .ok_or(ElfError::Malformed)?;
        let path = bytes.get(range).ok_or(ElfError::Malformed)?;
        let path = path.split(|&b| b == 0).next().unwrap_or_default();
        interpreter = Some(String::from_utf8_lossy(path).into_owned());
    }
    Ok(Binary {
        architecture: architecture(machine, little)?,
        interpreter,
    })
}

/// The OCI architecture of an ELF machine number.
fn architecture(machine: u16, little: bool) -> Result<&'static str, ElfError> {
    Ok(match machine {
        0x3e => "amd64",
        0xb7 => "arm64",
        0x03 => "386",
        0x28 => "arm",
        0xf3 => "riscv64",
        0x16 => "s390x",
        0x15 if little => "ppc64le",
        0x15 => "ppc64",
        0x102 => "loong64",
        other => return Err(ElfError::UnknownMachine(other)),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn take<const N: usize>(&self, at: usize) -> Result<[u8; N], ElfError> {
        self.bytes
            .get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .ok_or(ElfError::Malformed)
    }
    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let b = self.take(at)?;
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let b = self.take(at)?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Result<u64, ElfError> {
        let b = self.take(at)?;
        Ok(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 little-endian header with one program header of `kind`.
    fn elf64(machine: u16, kind: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 + 32];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&kind.to_le_bytes());
        b[72..80].copy_from_slice(&120u64.to_le_bytes());
        let path = b"/lib/ld.so\0";
        b[96..104].copy_from_slice(&(path.len() as u64).to_le_bytes());
        b[120..120 + path.len()].copy_from_slice(path);
        b
    }

    #[test]
    fn an_interpreter_means_dynamic() {
        let binary = inspect(&elf64(0x3e, PT_INTERP)).unwrap();
        assert_eq!(binary.architecture, "amd64");
        assert_eq!(binary.interpreter.as_deref(), Some("/lib/ld.so"));
    }

    #[test]
    fn no_interpreter_means_static() {
        let binary = inspect(&elf64(0xb7, 1)).unwrap();
        assert_eq!(binary.architecture, "arm64");
        assert_eq!(binary.interpreter, None);
    }

    #[test]
    fn the_running_test_binary_is_read() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let binary = inspect(&bytes).unwrap();
        let expected = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        assert_eq!(binary.architecture, expected);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(inspect(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        let mut cut = elf64(0x3e, PT_INTERP);
        cut.truncate(70);
        assert_eq!(inspect(&cut), Err(ElfError::Malformed));
        assert_eq!(
            inspect(&elf64(0x9999, 1)),
            Err(ElfError::UnknownMachine(0x9999))
        );
    }
}
