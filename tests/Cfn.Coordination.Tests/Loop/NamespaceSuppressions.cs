using System.Diagnostics.CodeAnalysis;

// The tests mirror src/Cfn.Coordination/Loop ("Loop" is a Visual Basic keyword; this is C# only).
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords", Scope = "namespace",
    Target = "~N:Cfn.Coordination.Tests.Loop", Justification = "Mirrors the library's namespace.")]
