//! Command-line values that travel as wire enums (`--network`, `--backend`): parsed into
//! the proto's enum here, so a bad value is refused before anything is sent, with the
//! accepted names in the message and in `--help`.

use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use stakpak_proto::{UnknownValue, WireEnum};

/// A clap value parser for one of the proto's enums, accepting exactly its wire names.
pub fn parser<T>() -> impl TypedValueParser<Value = T>
where
    T: WireEnum + FromStr<Err = UnknownValue> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(T::NAMES).try_map(|name| name.parse::<T>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;
    use stakpak_proto::{Backend, NetworkMode};

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long, value_parser = super::parser::<NetworkMode>())]
        network: Option<NetworkMode>,
        #[arg(long, value_parser = super::parser::<Backend>())]
        backend: Option<Backend>,
    }

    #[test]
    fn names_parse_into_the_enum_and_others_are_refused_with_the_names() {
        let args = Args::try_parse_from(["x", "--network", "proxied", "--backend", "docker"]);
        let args = args.unwrap();
        assert_eq!(args.network, Some(NetworkMode::Proxied));
        assert_eq!(args.backend, Some(Backend::Docker));
        let none = Args::try_parse_from(["x"]).unwrap();
        assert_eq!((none.network, none.backend), (None, None));

        let err = Args::try_parse_from(["x", "--network", "wifi"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid value 'wifi' for '--network <NETWORK>'")
                && err.contains("[possible values: none, host, proxied, bridge]"),
            "{err}"
        );
    }
}
