// CPU and allocation of the per-signal work done in the process, without Redis (issue 6: "micro-benchmarks where they
// help, e.g. signing and serialisation"). Run: dotnet run -c Release --project bench/Cfn.Micro -- --filter '*'
// (BenchmarkDotNet's own options apply: --filter '*Ack*', --job short, …).
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Cfn.Micro.ProtocolBenchmarks).Assembly).Run(args);
